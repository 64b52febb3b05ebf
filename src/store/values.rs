//! The `VALUES` rows of a multi-row statement written in raw SQL (diesel's query builder has
//! no `UPDATE … FROM (VALUES …)`), with each backend's bind placeholders.

use super::DbConnection;

/// Numbers bind placeholders in the order the binds are made.
pub struct Placeholders {
    postgres: bool,
    next: usize,
}

impl Placeholders {
    pub fn for_connection(conn: &DbConnection) -> Self {
        Self {
            postgres: matches!(conn, DbConnection::Postgres(_)),
            next: 1,
        }
    }

    /// The next placeholder: `$n` on Postgres, `?` on SQLite.
    pub fn next(&mut self) -> String {
        let number = self.next;
        self.next += 1;
        if self.postgres {
            format!("${number}")
        } else {
            "?".to_owned()
        }
    }

    /// `(p, p, …), (p, p, …)`: `rows` rows of `columns` placeholders each.
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
            postgres: true,
            next: 1,
        };
        assert_eq!(marks.next(), "$1");
        assert_eq!(marks.rows(2, 2), "($2, $3), ($4, $5)");
    }

    #[test]
    fn sqlite_uses_anonymous_placeholders() {
        let mut marks = Placeholders {
            postgres: false,
            next: 1,
        };
        assert_eq!(marks.rows(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
