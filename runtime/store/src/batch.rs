//! Several statements written as one unit. On SQLite they travel as one multi-statement command
//! (`BEGIN; ...; COMMIT;`), one round trip to the connection's thread instead of one per
//! statement; on PostgreSQL they run in a transaction, one by one.

use sqlx::any::AnyRow;
use sqlx::{Acquire, Executor};

use super::{Backend, Store};

/// A bound value.
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Self::Text(Some(v.clone()))
    }
}
impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Self::Text(v.clone())
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}
impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

/// Statements with `$1..$n` placeholders each, and their values.
#[derive(Default)]
pub struct Batch {
    statements: Vec<(String, Vec<Param>)>,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind(query: AnyQuery<'_>, param: Param) -> AnyQuery<'_> {
    match param {
        Param::Text(v) => query.bind(v),
        Param::Int(v) => query.bind(v),
    }
}

/// `sql` with each `$k` placeholder moved to `$k+offset`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            match digits.parse::<usize>() {
                Ok(k) => out.push_str(&(k + offset).to_string()),
                Err(_) => out.push_str(&digits),
            }
        }
    }
    out
}

impl Batch {
    pub fn push(&mut self, sql: impl Into<String>, params: Vec<Param>) {
        self.statements.push((sql.into(), params));
    }

    /// Runs every statement in one transaction; answers the rows the statements returned.
    pub async fn run(self, store: &Store) -> sqlx::Result<Vec<AnyRow>> {
        let mut conn = store.pool.acquire().await?;
        match store.backend {
            Backend::Sqlite => {
                let mut text = String::from("BEGIN;\n");
                let mut values = Vec::new();
                for (sql, params) in self.statements {
                    text.push_str(&renumber(&sql, values.len()));
                    text.push_str(";\n");
                    values.extend(params);
                }
                text.push_str("COMMIT;");
                let mut query = sqlx::query(&text);
                for value in values {
                    query = bind(query, value);
                }
                let rows = query.fetch_all(&mut *conn).await;
                if rows.is_err() {
                    // A failed statement leaves the transaction open: end it.
                    let _ = conn.execute("ROLLBACK").await;
                }
                rows
            }
            Backend::Postgres => {
                let mut tx = conn.begin().await?;
                let mut rows = Vec::new();
                for (sql, params) in self.statements {
                    let mut query = sqlx::query(&sql);
                    for value in params {
                        query = bind(query, value);
                    }
                    rows.extend(query.fetch_all(&mut *tx).await?);
                }
                tx.commit().await?;
                Ok(rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn placeholders_move_by_the_offset() {
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE id = $2", 19),
            "UPDATE t SET a = $20, b = $31 WHERE id = $21"
        );
        assert_eq!(renumber("SELECT 1", 5), "SELECT 1");
    }
}
