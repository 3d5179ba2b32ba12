//! Lists: one page of rows and the count of all of them, the answer of every list endpoint.
//! The page query and its count read the same filter text with the same values, so they can
//! never disagree about what is listed.

use sqlx::FromRow;
use sqlx::any::AnyRow;

use crate::{Page, Store};

/// The value of one `$n` placeholder of a list's filter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Self::Text(Some(value))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Self::Text(value)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(value: Option<i64>) -> Self {
        Self::Int(value)
    }
}

/// `SELECT {columns} FROM {table} WHERE {filter} ORDER BY {order}`, where `filter` uses the
/// placeholders `$1` to `$n` for the `n` values of `args`.
pub(crate) struct List<'a> {
    pub columns: &'a str,
    pub table: &'a str,
    pub filter: &'a str,
    pub order: &'a str,
    pub args: Vec<Arg<'a>>,
}

impl Store {
    /// The rows of `list` on `page`, and how many rows the whole list has.
    pub(crate) async fn page_of<T>(&self, list: List<'_>, page: Page) -> sqlx::Result<(Vec<T>, i64)>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let List { columns, table, filter, order, args } = list;
        let n = args.len();
        let sql =
            format!("SELECT {columns} FROM {table} WHERE {filter} ORDER BY {order} LIMIT ${} OFFSET ${}", n + 1, n + 2);
        let count_sql = format!("SELECT COUNT(*) FROM {table} WHERE {filter}");
        let mut rows = sqlx::query_as::<_, T>(&sql);
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for arg in args {
            match arg {
                Arg::Text(value) => {
                    rows = rows.bind(value);
                    count = count.bind(value);
                }
                Arg::Int(value) => {
                    rows = rows.bind(value);
                    count = count.bind(value);
                }
            }
        }
        let rows = rows.bind(page.limit).bind(page.offset).fetch_all(self.reads()).await?;
        let total = count.fetch_one(self.reads()).await?;
        Ok((rows, total))
    }
}
