//! A streamed response body (a multipart or SSE subscription) read the way a client's
//! parser reads it: block by block, each block complete only once the separator after it
//! has arrived. A server that writes a message without what closes it is caught here: the
//! block never completes, and the read fails after its deadline with what was received.

/// How long a test waits for one block: a hung server fails, never a speed figure.
const BLOCK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

pub struct Streamed {
    response: reqwest::Response,
    buffer: String,
    /// Everything received, for failure messages.
    pub received: String,
}

impl Streamed {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
            received: String::new(),
        }
    }

    /// The text before the next `separator`, taken with it; `None` when the body ends
    /// first.
    pub async fn until(&mut self, separator: &str) -> Option<String> {
        tokio::time::timeout(BLOCK_DEADLINE, async {
            loop {
                if let Some(end) = self.buffer.find(separator) {
                    let block: String = self.buffer.drain(..end + separator.len()).collect();
                    return Some(block[..end].to_owned());
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("the body streams without an error")?;
                let text = String::from_utf8_lossy(&chunk);
                self.buffer.push_str(&text);
                self.received.push_str(&text);
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "nothing complete within {BLOCK_DEADLINE:?}; received so far: {:?}",
                self.received
            )
        })
    }
}
