//! Keeping raw SQL queries as prepared statements.
//!
//! diesel never caches the prepared statement of a `sql_query`, so PostgreSQL parses and
//! plans it on every call. For the API's hot queries planning costs twice the execution
//! (0.8 ms against 0.4 ms for the status query, measured in BENCHMARKS.md). Wrapping such a
//! query in [`Prepared`] lets diesel-async keep one prepared statement per connection,
//! keyed by the SQL text and bind types. Use it only for queries whose text comes from a
//! small fixed set of shapes (binds vary, the text does not), or the cache would grow.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A query whose prepared statement may be kept and reused.
#[derive(Debug, Clone)]
pub struct Prepared<Q>(pub Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // No static id: the cache keys the statement by its SQL text instead.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
