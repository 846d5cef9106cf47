//! Connections that work through a transaction-mode pooler (PgBouncer's
//! `pool_mode = transaction`, Supabase's pooler on port 6543).
//!
//! Such a pooler lends its client a server connection for one transaction only: every
//! `Sync` outside `BEGIN … COMMIT` may hand the next message to another server connection.
//! diesel-async (through tokio-postgres) prepares each statement under a name (`s0`,
//! `s1`, …) in one round trip and runs it by that name in the next, so through such a
//! pooler the name is unknown where the statement runs (`prepared statement "s3" does not
//! exist`), or is taken there by another process's statement of the same name
//! (`prepared statement "s0" already exists`). PgBouncer learned to rewrite names only in
//! 1.21, and only when configured to.
//!
//! [`UnnamedStatements`] sits between tokio-postgres and the socket (above TLS) and makes
//! every statement unnamed, per round trip:
//!
//! - `Parse` of a named statement becomes a `Parse` of the unnamed one; the name's text and
//!   parameter types are remembered;
//! - `Bind` or `Describe` of a named statement is sent as `Parse` (of the remembered text,
//!   into the unnamed statement) followed by the `Bind`/`Describe` of the unnamed statement,
//!   unless the unnamed statement already holds that text in the same round trip — so a
//!   statement is parsed in the same round trip, and therefore on the same server
//!   connection, as it runs; the `ParseComplete` answering an added `Parse` is taken out of
//!   the replies, so tokio-postgres sees the conversation it expects;
//! - `Close` of a named statement forgets the name and closes the unnamed statement.
//!
//! No statement outlives its round trip on the server, so nothing can collide there. The
//! price: PostgreSQL parses and plans every statement each time it runs (no plan is kept),
//! which is what the pooler allows anyway.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Rewritten messages not yet taken by the socket, in bytes, beyond which a write waits.
const MAX_PENDING_OUT: usize = 256 * 1024;

/// A byte stream (TCP or TLS, client side of the PostgreSQL protocol) whose named
/// prepared statements are turned into unnamed ones; see the module documentation.
pub struct UnnamedStatements<S> {
    inner: S,
    /// Bytes written by the client that do not yet make a whole message.
    written: Vec<u8>,
    /// Rewritten messages not yet taken by `inner`.
    outgoing: Vec<u8>,
    outgoing_sent: usize,
    /// Bytes read from `inner` that do not yet make a whole message.
    read: Vec<u8>,
    /// Replies ready for the client.
    incoming: Vec<u8>,
    incoming_taken: usize,
    rewriter: Rewriter,
}

impl<S> UnnamedStatements<S> {
    /// Wraps `inner`, on which nothing has been sent yet (TLS, if any, already set up).
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            written: Vec::new(),
            outgoing: Vec::new(),
            outgoing_sent: 0,
            read: Vec::new(),
            incoming: Vec::new(),
            incoming_taken: 0,
            rewriter: Rewriter::default(),
        }
    }
}

/// The protocol state both directions share.
#[derive(Debug, Default)]
struct Rewriter {
    /// The startup message (the one message without a type byte) has been passed on.
    started: bool,
    /// Named statements: the `Parse` body after the name (query text, parameter types).
    statements: HashMap<Vec<u8>, Vec<u8>>,
    /// The named statement the unnamed one holds in the round trip being written.
    current: Option<Vec<u8>>,
    /// For each `Parse` of the round trip being written: whether it was added here.
    parses: VecDeque<bool>,
    /// The same, for round trips sent and not yet answered by `ReadyForQuery`.
    in_flight: VecDeque<VecDeque<bool>>,
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// The length of the first whole message in `buf` (type byte included when `tagged`),
/// or `None` while it is incomplete.
fn message_len(buf: &[u8], tagged: bool) -> io::Result<Option<usize>> {
    let offset = usize::from(tagged);
    let Some(len_bytes) = buf.get(offset..offset + 4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if len < 4 {
        return Err(invalid(
            "a PostgreSQL message shorter than its length field",
        ));
    }
    let total = offset + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Splits a NUL-terminated string off the front of `body`.
fn cstr(body: &[u8]) -> io::Result<(&[u8], &[u8])> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| invalid("a PostgreSQL message without its string terminator"))?;
    Ok((&body[..end], &body[end + 1..]))
}

fn push_message(out: &mut Vec<u8>, tag: u8, parts: &[&[u8]]) {
    let len: usize = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
    out.push(tag);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

impl Rewriter {
    /// Rewrites one whole frontend message (`message` includes the type byte) into `out`.
    fn outgoing(&mut self, message: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let tag = message[0];
        let body = &message[5..];
        match tag {
            b'P' => {
                let (name, rest) = cstr(body)?;
                if name.is_empty() {
                    // The client's own unnamed statement replaces ours.
                    self.current = None;
                    out.extend_from_slice(message);
                } else {
                    self.statements.insert(name.to_vec(), rest.to_vec());
                    self.current = Some(name.to_vec());
                    push_message(out, b'P', &[b"\0", rest]);
                }
                self.parses.push_back(false);
            }
            b'B' => {
                let (portal, after_portal) = cstr(body)?;
                let (name, rest) = cstr(after_portal)?;
                if self.ensure_parsed(name, out) {
                    push_message(out, b'B', &[portal, b"\0\0", rest]);
                } else {
                    out.extend_from_slice(message);
                }
            }
            b'D' if body.first() == Some(&b'S') => {
                let (name, _) = cstr(&body[1..])?;
                if self.ensure_parsed(name, out) {
                    push_message(out, b'D', &[b"S\0"]);
                } else {
                    out.extend_from_slice(message);
                }
            }
            b'C' if body.first() == Some(&b'S') => {
                let (name, _) = cstr(&body[1..])?;
                if !name.is_empty() && self.statements.remove(name).is_some() {
                    // The reply (CloseComplete) still comes, for the unnamed statement.
                    self.current = None;
                    push_message(out, b'C', &[b"S\0"]);
                } else {
                    if name.is_empty() {
                        self.current = None;
                    }
                    out.extend_from_slice(message);
                }
            }
            // Sync ends a round trip of the extended protocol, Query (and the legacy
            // FunctionCall) one of its own: each is answered by one ReadyForQuery, after
            // which the pooler may move the client to another server connection.
            b'S' | b'Q' | b'F' => {
                out.extend_from_slice(message);
                self.in_flight.push_back(std::mem::take(&mut self.parses));
                self.current = None;
            }
            _ => out.extend_from_slice(message),
        }
        Ok(())
    }

    /// Makes the unnamed statement hold the named statement `name`, adding its `Parse`
    /// when this round trip has not parsed it yet. False when `name` is not one this
    /// stream knows (the unnamed statement, or a name never parsed): the message then goes
    /// on as written.
    fn ensure_parsed(&mut self, name: &[u8], out: &mut Vec<u8>) -> bool {
        if name.is_empty() {
            return false;
        }
        let Some(rest) = self.statements.get(name) else {
            return false;
        };
        if self.current.as_deref() != Some(name) {
            push_message(out, b'P', &[b"\0", rest]);
            self.parses.push_back(true);
            self.current = Some(name.to_vec());
        }
        true
    }

    /// Whether the backend message `message` (type byte included) goes on to the client.
    fn incoming(&mut self, message: &[u8]) -> bool {
        match message[0] {
            // ParseComplete: the one answering a Parse added here is not the client's.
            b'1' => {
                let added = self
                    .in_flight
                    .front_mut()
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(false);
                !added
            }
            // ReadyForQuery ends the oldest round trip; after an error the server skipped
            // the rest of it, so whatever Parse it still listed never got an answer.
            b'Z' => {
                self.in_flight.pop_front();
                true
            }
            _ => true,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> UnnamedStatements<S> {
    /// Moves the whole messages of `written` into `outgoing`, rewritten.
    fn rewrite_written(&mut self) -> io::Result<()> {
        let mut start = 0;
        loop {
            let rest = &self.written[start..];
            let tagged = self.rewriter.started;
            let Some(len) = message_len(rest, tagged)? else {
                break;
            };
            if tagged {
                self.rewriter.outgoing(&rest[..len], &mut self.outgoing)?;
            } else {
                self.outgoing.extend_from_slice(&rest[..len]);
                self.rewriter.started = true;
            }
            start += len;
        }
        self.written.drain(..start);
        Ok(())
    }

    /// Writes `outgoing` to `inner` until it is empty or `inner` is not ready.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing_sent < self.outgoing.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.outgoing[self.outgoing_sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing_sent += n;
        }
        self.outgoing.clear();
        self.outgoing_sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Moves the whole messages of `read` into `incoming`, minus the added replies.
    fn filter_read(&mut self) -> io::Result<()> {
        let mut start = 0;
        while let Some(len) = message_len(&self.read[start..], true)? {
            let message = &self.read[start..start + len];
            if self.rewriter.incoming(message) {
                self.incoming.extend_from_slice(message);
            }
            start += len;
        }
        self.read.drain(..start);
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for UnnamedStatements<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.incoming_taken < this.incoming.len() {
                let available = &this.incoming[this.incoming_taken..];
                let n = available.len().min(buf.remaining());
                buf.put_slice(&available[..n]);
                this.incoming_taken += n;
                if this.incoming_taken == this.incoming.len() {
                    this.incoming.clear();
                    this.incoming_taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
            let filled = chunk_buf.filled();
            if filled.is_empty() {
                // End of stream: pass on whatever partial message is left, and the end.
                buf.put_slice(&this.read[..this.read.len().min(buf.remaining())]);
                this.read.clear();
                return Poll::Ready(Ok(()));
            }
            this.read.extend_from_slice(filled);
            this.filter_read()?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for UnnamedStatements<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outgoing.len() - this.outgoing_sent >= MAX_PENDING_OUT {
            ready!(this.poll_send(cx))?;
        }
        this.written.extend_from_slice(buf);
        this.rewrite_written()?;
        // Start sending; what `inner` cannot take now goes on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        push_message(&mut out, tag, parts);
        out
    }

    fn started() -> Rewriter {
        Rewriter {
            started: true,
            ..Rewriter::default()
        }
    }

    fn rewrite(r: &mut Rewriter, messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for m in messages {
            r.outgoing(m, &mut out).unwrap();
        }
        split(&out)
    }

    fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        while let Some(len) = message_len(bytes, true).unwrap() {
            messages.push(bytes[..len].to_vec());
            bytes = &bytes[len..];
        }
        assert!(bytes.is_empty());
        messages
    }

    const TYPES: &[u8] = &[0, 1, 0, 0, 0, 23];

    fn parse(name: &[u8]) -> Vec<u8> {
        msg(b'P', &[name, b"\0SELECT $1\0", TYPES])
    }
    fn bind(name: &[u8]) -> Vec<u8> {
        msg(
            b'B',
            &[b"\0", name, b"\0", &[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]],
        )
    }
    fn sync() -> Vec<u8> {
        msg(b'S', &[])
    }

    #[test]
    fn a_prepare_round_trip_parses_and_describes_the_unnamed_statement() {
        let mut r = started();
        let out = rewrite(&mut r, &[parse(b"s0"), msg(b'D', &[b"Ss0\0"]), sync()]);
        assert_eq!(out, vec![parse(b""), msg(b'D', &[b"S\0"]), sync()]);
        // Its replies all reach the client.
        assert!(r.incoming(&msg(b'1', &[])));
        assert!(r.incoming(&msg(b't', &[&[0, 0]])));
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
        assert!(r.in_flight.is_empty());
    }

    #[test]
    fn running_a_named_statement_in_a_later_round_trip_parses_it_again_there() {
        let mut r = started();
        rewrite(&mut r, &[parse(b"s0"), msg(b'D', &[b"Ss0\0"]), sync()]);
        let out = rewrite(&mut r, &[bind(b"s0"), msg(b'E', &[b"\0", &[0; 4]]), sync()]);
        assert_eq!(
            out,
            vec![parse(b""), bind(b""), msg(b'E', &[b"\0", &[0; 4]]), sync()]
        );
        // The first round trip's replies, then the second's: only the added
        // ParseComplete is taken out.
        assert!(r.incoming(&msg(b'1', &[])));
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
        assert!(!r.incoming(&msg(b'1', &[])), "the added ParseComplete");
        assert!(r.incoming(&msg(b'2', &[])));
        assert!(r.incoming(&msg(b'C', &[b"SELECT 1\0"])));
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
    }

    #[test]
    fn two_statements_in_one_round_trip_are_each_parsed_before_their_bind() {
        let mut r = started();
        rewrite(&mut r, &[parse(b"a"), sync(), parse(b"b"), sync()]);
        let out = rewrite(&mut r, &[bind(b"a"), bind(b"b"), bind(b"b"), sync()]);
        assert_eq!(
            out,
            vec![
                parse(b""),
                bind(b""),
                parse(b""),
                bind(b""),
                bind(b""),
                sync()
            ]
        );
    }

    #[test]
    fn close_forgets_the_name_and_closes_the_unnamed_statement() {
        let mut r = started();
        rewrite(&mut r, &[parse(b"s7"), sync()]);
        let out = rewrite(&mut r, &[msg(b'C', &[b"Ss7\0"]), sync()]);
        assert_eq!(out, vec![msg(b'C', &[b"S\0"]), sync()]);
        assert!(r.statements.is_empty());
        // A Bind of the forgotten name goes on as written: the server answers it.
        let out = rewrite(&mut r, &[bind(b"s7"), sync()]);
        assert_eq!(out, vec![bind(b"s7"), sync()]);
    }

    #[test]
    fn an_error_drops_the_rest_of_its_round_trip_without_losing_count() {
        let mut r = started();
        rewrite(&mut r, &[parse(b"x"), sync()]);
        assert!(r.incoming(&msg(b'1', &[])));
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
        // Two added parses; the first fails, so neither ParseComplete comes.
        rewrite(&mut r, &[parse(b"y"), sync()]);
        rewrite(
            &mut r,
            &[bind(b"x"), bind(b"y"), sync(), bind(b"x"), sync()],
        );
        assert!(r.incoming(&msg(b'1', &[])), "y's own Parse");
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
        assert!(r.incoming(&msg(b'E', &[b"SERROR\0\0"])));
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
        assert!(
            !r.incoming(&msg(b'1', &[])),
            "the next round trip's added Parse"
        );
        assert!(r.incoming(&msg(b'2', &[])));
        assert!(r.incoming(&msg(b'Z', &[b"I"])));
    }

    #[test]
    fn simple_queries_pass_and_end_a_round_trip() {
        let mut r = started();
        rewrite(&mut r, &[parse(b"x"), sync()]);
        let q = msg(b'Q', &[b"BEGIN\0"]);
        let out = rewrite(&mut r, &[q.clone(), bind(b"x"), sync()]);
        assert_eq!(out, vec![q, parse(b""), bind(b""), sync()]);
        assert_eq!(r.in_flight.len(), 3);
    }

    #[tokio::test]
    async fn a_stream_rewrites_whole_messages_split_across_writes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client_side, mut server_side) = tokio::io::duplex(1 << 16);
        let mut stream = UnnamedStatements::new(client_side);
        // The startup message has no type byte.
        let startup: &[u8] = &[0, 0, 0, 8, 0, 3, 0, 0];
        let mut bytes = startup.to_vec();
        for m in [parse(b"s1"), sync(), bind(b"s1"), sync()] {
            bytes.extend(m);
        }
        for piece in bytes.chunks(3) {
            stream.write_all(piece).await.unwrap();
        }
        stream.flush().await.unwrap();
        let mut expected = startup.to_vec();
        for m in [parse(b""), sync(), parse(b""), bind(b""), sync()] {
            expected.extend(m);
        }
        let mut got = vec![0; expected.len()];
        server_side.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);

        let mut replies = Vec::new();
        for m in [
            msg(b'1', &[]),
            msg(b'Z', &[b"I"]),
            msg(b'1', &[]),
            msg(b'2', &[]),
            msg(b'Z', &[b"I"]),
        ] {
            replies.extend(m);
        }
        for piece in replies.chunks(2) {
            server_side.write_all(piece).await.unwrap();
        }
        drop(server_side);
        let mut seen = Vec::new();
        stream.read_to_end(&mut seen).await.unwrap();
        let mut expected = Vec::new();
        for m in [
            msg(b'1', &[]),
            msg(b'Z', &[b"I"]),
            msg(b'2', &[]),
            msg(b'Z', &[b"I"]),
        ] {
            expected.extend(m);
        }
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_length_below_four_is_refused() {
        assert!(message_len(&[b'Q', 0, 0, 0, 2], true).is_err());
        assert_eq!(message_len(&[b'Q', 0, 0, 0], true).unwrap(), None);
    }
}
