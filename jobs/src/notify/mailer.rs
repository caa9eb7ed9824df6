//! SMTP: a pooled lettre transport, messages built from rendered templates, and the server's
//! replies classified into what happens next.

use std::time::Duration;

use ferry_config::SmtpUrl;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, header::ContentType},
    transport::smtp::{PoolConfig, response::Response},
};

use super::template::Rendered;

/// Sends mail over a pool of SMTP connections shared by every job of a worker.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Option<Mailbox>,
}

impl std::fmt::Debug for Mailer {
    // The transport holds the credentials: show nothing of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Why a message did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Bad input (an address that does not parse): never retried.
    #[error("{0}")]
    Invalid(String),
    /// The server refused for good (5xx): never retried.
    #[error("refused by the SMTP server: {0}")]
    Refused(String),
    /// A 4xx reply, or the server could not be reached: try again later.
    #[error("SMTP server unavailable or deferring: {0}")]
    Deferred(String),
}

impl Mailer {
    /// Builds the transport; nothing connects until the first message.
    pub fn new(
        url: &SmtpUrl,
        from: Option<&str>,
        connections: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| format!("SMTP_URL {} is not usable: {e}", url.redacted()))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(connections))
            .build();
        let from = from
            .map(|f| {
                f.parse::<Mailbox>()
                    .map_err(|e| format!("notify.from (SMTP_FROM) {f:?} is not an address: {e}"))
            })
            .transpose()?;
        Ok(Self { transport, from })
    }

    /// Parses a recipient address.
    pub fn address(to: &str) -> Result<Mailbox, SendError> {
        to.parse::<Mailbox>()
            .map_err(|e| SendError::Invalid(format!("malformed address {to:?}: {e}")))
    }

    /// Sends one message; `id` becomes its Message-ID, the same for every attempt, so a copy
    /// sent again after a crash is recognisable as the same message. Returns the server's
    /// reply.
    pub async fn send(&self, to: Mailbox, id: &str, m: &Rendered) -> Result<String, SendError> {
        let from = self.from.clone().ok_or_else(|| {
            SendError::Invalid("no sender configured: set SMTP_FROM or notify.from".into())
        })?;
        let domain = from.email.domain().to_owned();
        let builder = Message::builder()
            .from(from)
            .to(to)
            .subject(&m.subject)
            .message_id(Some(format!("<{id}@{domain}>")));
        let message = match &m.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                m.text.clone(),
                html.clone(),
            )),
            None => builder.header(ContentType::TEXT_PLAIN).body(m.text.clone()),
        }
        .map_err(|e| SendError::Invalid(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(response) => Ok(reply(&response)),
            Err(e) if e.is_permanent() => Err(SendError::Refused(e.to_string())),
            // 4xx, network, TLS, timeouts: the server may take it later.
            Err(e) => Err(SendError::Deferred(e.to_string())),
        }
    }
}

/// "250 2.0.0 Ok: queued as ..." from a response.
fn reply(r: &Response) -> String {
    let text: Vec<&str> = r.message().collect();
    format!("{} {}", r.code(), text.join(" "))
}
