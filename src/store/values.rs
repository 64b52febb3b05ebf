//! Bind placeholders, and the returned ids, of statements written in raw SQL (diesel's query builder has no
//! `UPDATE … FROM (VALUES …)` and no `MATERIALIZED` CTE), in each backend's syntax.

use diesel::sql_types::Text;
use diesel::QueryableByName;

use super::DbConnection;

/// The `id` of a row an `UPDATE … RETURNING … AS id` changed.
#[derive(QueryableByName)]
pub struct ReturnedId {
    #[diesel(sql_type = Text)]
    pub id: String,
}

/// Numbered placeholders, `$n` on Postgres and `?n` on SQLite, so that one SQL text builder
/// serves both and a value used twice is bound once.
pub struct Placeholders {
    prefix: char,
    next: usize,
}

impl Placeholders {
    pub fn for_connection(conn: &DbConnection) -> Self {
        let prefix = match conn {
            DbConnection::Postgres(_) => '$',
            DbConnection::Sqlite(_) => '?',
        };
        Self { prefix, next: 0 }
    }

    /// The next placeholder; values must be bound in the order these were taken.
    pub fn next(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }

    /// The rows of a `VALUES` list: `(p, p, …), (p, p, …)`, `rows` rows of `columns` each.
    pub fn rows(&mut self, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|_| {
                let row: Vec<String> = (0..columns).map(|_| self.next()).collect();
                format!("({})", row.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_every_placeholder_in_order() {
        let mut marks = Placeholders {
            prefix: '$',
            next: 0,
        };
        assert_eq!(marks.next(), "$1");
        assert_eq!(marks.rows(2, 2), "($2, $3), ($4, $5)");
    }

    #[test]
    fn sqlite_numbers_them_too() {
        let mut marks = Placeholders {
            prefix: '?',
            next: 0,
        };
        assert_eq!(marks.rows(2, 3), "(?1, ?2, ?3), (?4, ?5, ?6)");
    }
}
