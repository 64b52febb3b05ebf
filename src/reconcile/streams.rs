//! Both ledgers as streams ordered by transaction id, read a page at a time with one page
//! fetched ahead, so that memory stays flat however long the window. Each stream checks its
//! own order: a merge over unordered input would report nonsense, so it stops instead.

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::sync::mpsc;

use super::ReconcileError;
use crate::operator::listing::{ListQuery, OperatorTransaction};
use crate::operator::OperatorClient;
use crate::store::transactions::{self, TransactionRow};
use crate::store::{Store, StoreError};

/// Pages buffered ahead of the merge.
const PREFETCH: usize = 2;

pub struct Ordered<T> {
    side: &'static str,
    pages: mpsc::Receiver<Result<Vec<T>, ReconcileError>>,
    page: std::vec::IntoIter<T>,
    id: fn(&T) -> &str,
    last_id: Option<String>,
}

impl<T> Ordered<T> {
    fn new(
        side: &'static str,
        pages: mpsc::Receiver<Result<Vec<T>, ReconcileError>>,
        id: fn(&T) -> &str,
    ) -> Self {
        Self {
            side,
            pages,
            page: Vec::new().into_iter(),
            id,
            last_id: None,
        }
    }

    pub async fn next(&mut self) -> Result<Option<T>, ReconcileError> {
        loop {
            if let Some(item) = self.page.next() {
                let id = (self.id)(&item);
                if let Some(last) = &self.last_id {
                    if id.as_bytes() <= last.as_bytes() {
                        return Err(ReconcileError::Unordered {
                            side: self.side,
                            previous: last.clone(),
                            next: id.to_owned(),
                        });
                    }
                }
                self.last_id = Some(id.to_owned());
                return Ok(Some(item));
            }
            match self.pages.recv().await {
                Some(Ok(page)) => self.page = page.into_iter(),
                Some(Err(error)) => return Err(error),
                None => return Ok(None),
            }
        }
    }
}

/// The hub's transactions created in `[from, to]`, by id.
pub fn hub(
    store: Store,
    from: NaiveDateTime,
    to: NaiveDateTime,
    page_size: usize,
) -> Ordered<TransactionRow> {
    let (sender, pages) = mpsc::channel(PREFETCH);
    tokio::spawn(async move {
        let mut after = String::new();
        loop {
            let cursor = after.clone();
            let page = store
                .run(move |conn| {
                    transactions::page_by_id(conn, from, to, &cursor, page_size as i64)
                        .map_err(StoreError::from)
                })
                .await
                .map_err(ReconcileError::from);
            let last_page = match &page {
                Ok(rows) => {
                    after = rows.last().map(|row| row.id.clone()).unwrap_or_default();
                    rows.len() < page_size
                }
                Err(_) => true,
            };
            if sender.send(page).await.is_err() || last_page {
                return;
            }
        }
    });
    Ordered::new("hub", pages, |row: &TransactionRow| row.id.as_str())
}

/// The operator's transactions created in `[start, end]`, by id, following its cursor.
pub fn operator(
    client: OperatorClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    page_size: usize,
) -> Ordered<OperatorTransaction> {
    let (sender, pages) = mpsc::channel(PREFETCH);
    tokio::spawn(async move {
        let mut query = ListQuery {
            start,
            end,
            limit: page_size,
            cursor: None,
        };
        loop {
            let page = client
                .list_transactions(&query)
                .await
                .map_err(ReconcileError::from);
            let next_cursor = match &page {
                Ok(page) => page.next_cursor.clone(),
                Err(_) => None,
            };
            let page = page.map(|page| page.transactions);
            let stalled = next_cursor.is_some() && next_cursor == query.cursor;
            if sender.send(page).await.is_err() {
                return;
            }
            if stalled {
                let _ = sender.send(Err(ReconcileError::StalledCursor)).await;
                return;
            }
            match next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return,
            }
        }
    });
    Ordered::new("operator", pages, |t: &OperatorTransaction| {
        t.transaction_id.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ordered(pages: Vec<Vec<&str>>) -> Ordered<String> {
        let (sender, receiver) = mpsc::channel(pages.len().max(1));
        for page in pages {
            sender
                .send(Ok(page.into_iter().map(str::to_owned).collect()))
                .await
                .unwrap();
        }
        Ordered::new("operator", receiver, |id: &String| id.as_str())
    }

    #[tokio::test]
    async fn passes_ordered_ids_across_pages() {
        let mut stream = ordered(vec![vec!["a", "b"], vec!["c"]]).await;
        for expected in ["a", "b", "c"] {
            assert_eq!(stream.next().await.unwrap().as_deref(), Some(expected));
        }
        assert_eq!(stream.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn stops_at_an_id_out_of_order_or_repeated() {
        for pages in [vec![vec!["a", "c"], vec!["b"]], vec![vec!["a", "a"]]] {
            let mut stream = ordered(pages).await;
            stream.next().await.unwrap();
            let error = loop {
                match stream.next().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("disorder went unnoticed"),
                    Err(error) => break error,
                }
            };
            assert!(
                matches!(
                    error,
                    ReconcileError::Unordered {
                        side: "operator",
                        ..
                    }
                ),
                "{error}"
            );
        }
    }
}
