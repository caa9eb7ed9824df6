//! SMTP: a pool of lettre connections (deadpool), messages built from rendered templates, and
//! each message sent in two steps around a commit point, with the server's replies classified
//! into what happens next.
//!
//! [`Mailer::open`] sends `MAIL FROM`, `RCPT TO` and `DATA` and stops at the server's 354;
//! [`Open::finish`] writes the message and the end-of-data marker and reads the reply. Between
//! the two the caller records that the message is being completed. A server must not deliver
//! a message whose connection is lost before the end-of-data marker (RFC 5321, 4.1.1.4), so
//! dropping an [`Open`] (it closes the connection without the marker) mails nothing.

use std::{borrow::Cow, time::Duration};

use deadpool::managed::{Manager, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use ferry_config::SmtpUrl;
use lettre::{
    Address, Message,
    address::Envelope,
    message::{Mailbox, MultiPart, header::ContentType},
    transport::smtp::{
        Error as SmtpError,
        authentication::{Credentials, DEFAULT_MECHANISMS},
        client::{AsyncSmtpConnection, TlsParameters},
        commands::{Data, Mail, Rcpt, Rset},
        extension::{ClientId, Extension, MailBodyParameter, MailParameter},
        response::Response,
    },
};

use super::template::Rendered;

/// Sends mail over a pool of SMTP connections shared by every job of a worker.
#[derive(Clone)]
pub struct Mailer {
    pool: Pool<Connector>,
    from: Option<Mailbox>,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    // The pool's connector holds the credentials: show nothing of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Why a message did not go out, or may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Bad input (an address that does not parse): never retried.
    #[error("{0}")]
    Invalid(String),
    /// The server refused for good (5xx): never retried.
    #[error("refused by the SMTP server: {0}")]
    Refused(String),
    /// A 4xx reply, or the server could not be reached, before the message was complete (or
    /// a 4xx reply to it): nothing was mailed; try again later.
    #[error("SMTP server unavailable or deferring: {0}")]
    Deferred(String),
    /// The message was written with its end-of-data marker (or the connection failed while
    /// writing it) and no reply came: the server may have it. Never sent again.
    #[error("no reply after the message was complete: {0}")]
    InDoubt(String),
}

/// A message ready to go: its envelope and its bytes, Message-ID included.
#[derive(Debug, Clone)]
pub struct Outgoing {
    envelope: Envelope,
    bytes: Vec<u8>,
}

/// A mail transaction the server is ready to take the data of (it answered `DATA` with 354).
/// [`Open::finish`] completes it; dropping it closes the connection without the end-of-data
/// marker, so nothing is mailed.
#[derive(Debug)]
pub struct Open {
    session: Session,
}

impl Mailer {
    /// Prepares the pool; nothing connects until the first message.
    pub fn new(
        url: &SmtpUrl,
        from: Option<&str>,
        connections: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        let connector = Connector::from_url(url, timeout)
            .map_err(|e| format!("SMTP_URL {} is not usable: {e}", url.redacted()))?;
        let pool = Pool::builder(connector)
            .max_size(connections.max(1) as usize)
            .build()
            .map_err(|e| format!("SMTP pool: {e}"))?;
        let from = from
            .map(|f| {
                f.parse::<Mailbox>()
                    .map_err(|e| format!("notify.from (SMTP_FROM) {f:?} is not an address: {e}"))
            })
            .transpose()?;
        Ok(Self {
            pool,
            from,
            timeout,
        })
    }

    /// Takes a connection (connect, EHLO, authenticate) or a pooled one that answers NOOP,
    /// and gives it back: whether the server would take mail now, for `/readyz`.
    pub async fn ping(&self) -> Result<(), SendError> {
        self.pool.get().await.map(drop).map_err(|e| match e {
            PoolError::Backend(e) => e,
            other => SendError::Deferred(other.to_string()),
        })
    }

    /// Parses a recipient address.
    pub fn address(to: &str) -> Result<Mailbox, SendError> {
        to.parse::<Mailbox>()
            .map_err(|e| SendError::Invalid(format!("malformed address {to:?}: {e}")))
    }

    /// Builds one message; `id` becomes its Message-ID, the same for every attempt.
    pub fn compose(&self, to: Mailbox, id: &str, m: &Rendered) -> Result<Outgoing, SendError> {
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
        Ok(Outgoing {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        })
    }

    /// Takes a pooled connection and sends `MAIL FROM`, `RCPT TO` and `DATA`. Any error here
    /// is before the data, so nothing was mailed: 5xx is [`SendError::Refused`], everything
    /// else (4xx, connection, TLS, timeouts) [`SendError::Deferred`].
    pub async fn open(&self, out: &Outgoing) -> Result<Open, SendError> {
        let conn = self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            other => SendError::Deferred(other.to_string()),
        })?;
        let mut session = Session {
            conn: Some(conn),
            timeout: self.timeout,
        };
        let info = session.conn().server_info();
        // As lettre's own send: SMTPUTF8 for non-ASCII addresses, 8BITMIME for non-ASCII data.
        let mut parameters = Vec::new();
        let non_ascii = |a: &Address| !AsRef::<str>::as_ref(a).is_ascii();
        if out.envelope.from().is_some_and(non_ascii) || out.envelope.to().iter().any(non_ascii) {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                // Nothing was sent on it: the connection goes back to the pool.
                session.release();
                return Err(SendError::Deferred(
                    "the envelope has non-ASCII addresses and the server does not support SMTPUTF8"
                        .into(),
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !out.bytes.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                session.release();
                return Err(SendError::Deferred(
                    "the message is not ASCII and the server does not support 8BITMIME".into(),
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        session
            .command(Mail::new(out.envelope.from().cloned(), parameters))
            .await?;
        for to in out.envelope.to() {
            session.command(Rcpt::new(to.clone(), Vec::new())).await?;
        }
        session.command(Data).await?;
        Ok(Open { session })
    }

    /// Sends one message without a commit point (`open` then `finish`): for callers that keep
    /// no delivery record, such as the benchmark's mailer-alone measurement.
    pub async fn send(&self, to: Mailbox, id: &str, m: &Rendered) -> Result<String, SendError> {
        let out = self.compose(to, id, m)?;
        self.open(&out).await?.finish(&out).await
    }
}

impl Open {
    /// Writes the message and the end-of-data marker and reads the reply: 250 is the server's
    /// acceptance (returned), 5xx [`SendError::Refused`], 4xx [`SendError::Deferred`]; no
    /// reply (a network error, a timeout, a reply that does not parse) is
    /// [`SendError::InDoubt`]. lettre writes the message and the marker in one call, so a
    /// connection lost while writing the message is in doubt too.
    pub async fn finish(mut self, out: &Outgoing) -> Result<String, SendError> {
        let timeout = self.session.timeout;
        let conn = self.session.conn();
        match tokio::time::timeout(timeout, conn.message(&out.bytes)).await {
            Ok(Ok(response)) => {
                self.session.release();
                Ok(reply(&response))
            }
            Ok(Err(e)) if e.is_permanent() => {
                self.session.release();
                Err(SendError::Refused(e.to_string()))
            }
            Ok(Err(e)) if e.is_transient() => {
                self.session.release();
                Err(SendError::Deferred(e.to_string()))
            }
            // The session is dropped: the connection closes.
            Ok(Err(e)) => Err(SendError::InDoubt(e.to_string())),
            Err(_) => Err(SendError::InDoubt(format!(
                "no reply within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }
}

/// A connection taken from the pool. It goes back only through [`Session::release`], after a
/// reply that leaves it between transactions; dropped otherwise (an error, a timeout, a task
/// cancelled mid-command), it is closed and never reused.
struct Session {
    conn: Option<Object<Connector>>,
    timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    fn conn(&mut self) -> &mut AsyncSmtpConnection {
        self.conn
            .as_mut()
            .expect("a session holds its connection until released")
    }

    /// Back to the pool.
    fn release(&mut self) {
        self.conn.take();
    }

    /// One command of the transaction. A refusal (4xx/5xx) resets the transaction with
    /// `RSET` so the connection can go back to the pool; anything else closes it.
    async fn command(&mut self, command: impl std::fmt::Display) -> Result<Response, SendError> {
        let timeout = self.timeout;
        let conn = self.conn();
        let (e, refused) = match tokio::time::timeout(timeout, conn.command(command)).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(e)) => (classify(&e), e.is_permanent() || e.is_transient()),
            Err(_) => (
                SendError::Deferred(format!(
                    "no reply within {}",
                    humantime::format_duration(timeout)
                )),
                false,
            ),
        };
        if refused
            && matches!(
                tokio::time::timeout(timeout, conn.command(Rset)).await,
                Ok(Ok(_))
            )
        {
            self.release();
        }
        Err(e)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Taken out of the pool and dropped: the socket closes.
            drop(Object::take(conn));
        }
    }
}

/// 5xx: refused for good; everything else (4xx, network, TLS): try again later.
fn classify(e: &SmtpError) -> SendError {
    if e.is_permanent() {
        SendError::Refused(e.to_string())
    } else {
        SendError::Deferred(e.to_string())
    }
}

/// "250 2.0.0 Ok: queued as ..." from a response.
fn reply(r: &Response) -> String {
    let text: Vec<&str> = r.message().collect();
    format!("{} {}", r.code(), text.join(" "))
}

/// How connections are made, from `SMTP_URL` as lettre's `AsyncSmtpTransport::from_url` reads
/// it: `smtp://` plain (port 25), `?tls=required` STARTTLS (587), `?tls=opportunistic`
/// STARTTLS when offered (587), `smtps://` TLS from the first byte (465), `user:pass@`
/// (percent-decoded) for AUTH PLAIN or LOGIN, a path for the EHLO name.
struct Connector {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
}

enum Tls {
    None,
    Opportunistic(TlsParameters),
    Required(TlsParameters),
    Wrapper(TlsParameters),
}

impl Connector {
    /// Errors never include the URL (it may hold a password).
    fn from_url(url: &SmtpUrl, timeout: Duration) -> Result<Self, String> {
        let parsed = url::Url::parse(url.expose()).map_err(|e| e.to_string())?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("smtp host undefined")?
            .to_owned();
        let tls_query = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let params = || TlsParameters::new(host.clone()).map_err(|e| e.to_string());
        let (default_port, tls) = match (parsed.scheme(), tls_query.as_deref()) {
            ("smtp", None) => (25, Tls::None),
            ("smtp", Some("required")) => (587, Tls::Required(params()?)),
            ("smtp", Some("opportunistic")) => (587, Tls::Opportunistic(params()?)),
            ("smtps", _) => (465, Tls::Wrapper(params()?)),
            (scheme, tls) => {
                return Err(format!(
                    "unknown scheme {scheme:?} or tls parameter {tls:?}"
                ));
            }
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let credentials = match parsed.password() {
            Some(password) => {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(Cow::into_owned)
                        .map_err(|_| "the user or password is not UTF-8 once decoded".to_owned())
                };
                Some(Credentials::new(
                    decode(parsed.username())?,
                    decode(password)?,
                ))
            }
            None => None,
        };
        Ok(Self {
            port: parsed.port().unwrap_or(default_port),
            host,
            tls,
            credentials,
            hello,
            timeout,
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let wrapper = match &self.tls {
            Tls::Wrapper(p) => Some(p.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await?;
        match &self.tls {
            Tls::Opportunistic(p) if conn.can_starttls() => {
                conn.starttls(p.clone(), &self.hello).await?;
            }
            Tls::Required(p) => conn.starttls(p.clone(), &self.hello).await?,
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(conn)
    }
}

impl Manager for Connector {
    type Type = AsyncSmtpConnection;
    type Error = SendError;

    /// Connects (TLS as configured), says EHLO and authenticates, within `smtp_timeout`.
    /// A 5xx (such as 535 for a wrong password) is refused for good; the rest is retried.
    async fn create(&self) -> Result<AsyncSmtpConnection, SendError> {
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(SendError::Deferred(format!(
                "no connection within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// A pooled connection is reused once it answers NOOP.
    async fn recycle(
        &self,
        conn: &mut AsyncSmtpConnection,
        _: &Metrics,
    ) -> RecycleResult<SendError> {
        if !conn.has_broken()
            && matches!(
                tokio::time::timeout(self.timeout, conn.test_connected()).await,
                Ok(true)
            )
        {
            Ok(())
        } else {
            Err(RecycleError::message("the SMTP connection is closed"))
        }
    }
}
