//! The node-local DNS server pods use as their nameserver (the bridge's gateway
//! address, port 53). It answers only names inside the cluster domain, through a
//! [`Resolver`] (the agent daemon asks the control plane's Resolve RPC): A and AAAA
//! records with a short TTL, NXDOMAIN for unknown names in the domain, and REFUSED
//! for everything outside it: nothing is ever forwarded off the machine. Messages
//! are decoded and encoded with `hickory-proto`; transport is UDP, and TCP for
//! clients retrying a truncated answer.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// TTL of every answer, in seconds: pods and services move; caches must follow.
pub const DEFAULT_TTL: u32 = 5;

/// The largest UDP payload we send to EDNS clients.
const EDNS_PAYLOAD: u16 = 1232;

/// What the resolver knows about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveAnswer {
    /// The name exists with these addresses (possibly none, e.g. a headless
    /// service without endpoints).
    Addresses(Vec<IpAddr>),
    /// The name does not exist.
    NoSuchName,
}

/// A resolver failure (answered as SERVFAIL).
#[derive(Debug, thiserror::Error)]
#[error("resolve {name}: {message}")]
pub struct ResolveError {
    /// The name asked.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// Looks cluster names up (names are lowercase, without the trailing dot).
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// The addresses of `name`, e.g. `web.shop.svc.cluster.local`.
    async fn resolve(&self, name: &str) -> Result<ResolveAnswer, ResolveError>;
}

/// Errors of the DNS server's setup.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The cluster domain is not a DNS name.
    #[error("cluster domain {domain:?}: {message}")]
    Domain {
        /// The domain given.
        domain: String,
        /// Why it is not a name.
        message: String,
    },
    /// A socket operation failed.
    #[error("DNS server {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Answers DNS queries for one cluster domain.
pub struct DnsServer {
    domain: Name,
    resolver: Arc<dyn Resolver>,
    ttl: u32,
}

impl DnsServer {
    /// A server for `domain` (e.g. `cluster.local`) answering through `resolver`.
    pub fn new(domain: &str, resolver: Arc<dyn Resolver>) -> Result<Self, DnsError> {
        let bad = |message: String| DnsError::Domain {
            domain: domain.to_string(),
            message,
        };
        if domain.trim_matches('.').is_empty() {
            return Err(bad("must not be empty".into()));
        }
        let mut name = Name::from_ascii(domain).map_err(|e| bad(e.to_string()))?;
        name.set_fqdn(true);
        Ok(Self {
            domain: name.to_lowercase(),
            resolver,
            ttl: DEFAULT_TTL,
        })
    }

    /// Sets the TTL of answers.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// The answer to one wire-format query received over UDP (truncated to 512
    /// bytes, or the client's EDNS size); `None` when it is not worth one
    /// (unparseable header, or a response).
    pub async fn answer(&self, request: &[u8]) -> Option<Vec<u8>> {
        self.respond(request, true).await
    }

    async fn respond(&self, request: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(request) {
            Ok(m) => m,
            Err(_) => {
                // Answer FORMERR when at least the id can be read.
                let id = u16::from_be_bytes([*request.first()?, *request.get(1)?]);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::new(0, MessageType::Response, request.metadata.op_code);
        response.metadata = Metadata::response_from_request(&request.metadata);
        response.queries = request.queries.clone();
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            response.edns = Some(edns);
        }
        let code = self.fill(&request, &mut response).await;
        response.metadata.response_code = code;
        let limit = match &request.edns {
            _ if !udp => usize::from(u16::MAX),
            Some(e) => usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)),
            None => 512,
        };
        let bytes = response.to_vec().ok()?;
        if bytes.len() > limit {
            return response.truncate().to_vec().ok();
        }
        Some(bytes)
    }

    /// Answers `request` into `response`, returning the response code.
    async fn fill(&self, request: &Message, response: &mut Message) -> ResponseCode {
        if request.metadata.op_code != OpCode::Query {
            return ResponseCode::NotImp;
        }
        let [query] = request.queries.as_slice() else {
            return ResponseCode::FormErr;
        };
        let qname = query.name().to_lowercase();
        if !self.domain.zone_of(&qname) {
            return ResponseCode::Refused;
        }
        response.metadata.authoritative = true;
        let name = qname.to_ascii();
        let name = name.trim_end_matches('.');
        let addresses = match self.resolver.resolve(name).await {
            Ok(ResolveAnswer::Addresses(a)) => a,
            Ok(ResolveAnswer::NoSuchName) => return ResponseCode::NXDomain,
            Err(e) => {
                tracing::warn!(error = %e, "DNS resolve");
                return ResponseCode::ServFail;
            }
        };
        let qtype = query.query_type();
        for ip in addresses {
            let rdata = match (ip, qtype) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
                _ => continue,
            };
            response.add_answer(Record::from_rdata(query.name().clone(), self.ttl, rdata));
        }
        ResponseCode::NoError
    }

    /// Serves queries arriving on `socket` until `shutdown` completes; each query
    /// is answered in its own task so a slow lookup holds up no other.
    pub async fn serve_udp(
        self: Arc<Self>,
        socket: UdpSocket,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 4096];
        tokio::pin!(shutdown);
        loop {
            let (len, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                received = socket.recv_from(&mut buf) => match received {
                    Ok(r) => r,
                    // ICMP errors from earlier replies surface here; keep serving.
                    Err(e) => {
                        tracing::debug!(error = %e, "DNS recv");
                        continue;
                    }
                },
            };
            let request = buf[..len].to_vec();
            let (server, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                if let Some(reply) = server.answer(&request).await
                    && let Err(e) = socket.send_to(&reply, peer).await
                {
                    tracing::debug!(%peer, error = %e, "DNS reply");
                }
            });
        }
    }
}

impl DnsServer {
    /// Serves DNS over TCP (length-prefixed messages, RFC 7766) on `listener` until
    /// `shutdown` completes; clients retry over TCP after a truncated UDP answer.
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "DNS accept");
                        continue;
                    }
                },
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.serve_connection(stream).await {
                    tracing::debug!(%peer, error = %e, "DNS over TCP");
                }
            });
        }
    }

    async fn serve_connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        loop {
            let len = match stream.read_u16().await {
                Ok(len) => usize::from(len),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut request = vec![0u8; len];
            stream.read_exact(&mut request).await?;
            let Some(reply) = self.respond(&request, false).await else {
                return Ok(());
            };
            let len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
            stream.write_u16(len).await?;
            stream.write_all(&reply).await?;
        }
    }
}

/// Binds the server's TCP listener.
pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DnsError::Io { addr, source })
}

/// Binds the server's UDP socket.
pub async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, DnsError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| DnsError::Io { addr, source })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hickory_proto::op::Query;

    use super::*;

    struct Fixed(BTreeMap<String, Vec<IpAddr>>);

    #[async_trait::async_trait]
    impl Resolver for Fixed {
        async fn resolve(&self, name: &str) -> Result<ResolveAnswer, ResolveError> {
            if name.starts_with("broken.") {
                return Err(ResolveError {
                    name: name.into(),
                    message: "control plane unreachable".into(),
                });
            }
            Ok(match self.0.get(name) {
                Some(a) => ResolveAnswer::Addresses(a.clone()),
                None => ResolveAnswer::NoSuchName,
            })
        }
    }

    fn server() -> DnsServer {
        let names = BTreeMap::from([(
            "web.shop.svc.cluster.local".to_string(),
            vec!["10.96.0.10".parse().unwrap(), "fd00::10".parse().unwrap()],
        )]);
        DnsServer::new("cluster.local", Arc::new(Fixed(names))).unwrap()
    }

    async fn ask(server: &DnsServer, name: &str, qtype: RecordType) -> Message {
        let mut q = Message::query();
        q.metadata.id = 4242;
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let reply = server.answer(&q.to_vec().unwrap()).await.unwrap();
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.id, 4242);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        reply
    }

    #[tokio::test]
    async fn answers_a_and_aaaa_for_known_names_case_insensitively() {
        let s = server();
        let a = ask(&s, "Web.Shop.svc.cluster.local.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].ttl, DEFAULT_TTL);
        assert_eq!(
            a.answers[0].data,
            RData::A(A("10.96.0.10".parse().unwrap()))
        );
        let aaaa = ask(&s, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
        assert_eq!(aaaa.answers.len(), 1);
        assert_eq!(
            aaaa.answers[0].data,
            RData::AAAA(AAAA("fd00::10".parse().unwrap()))
        );
        let mx = ask(&s, "web.shop.svc.cluster.local.", RecordType::MX).await;
        assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
        assert!(mx.answers.is_empty());
    }

    #[tokio::test]
    async fn unknown_in_domain_is_nxdomain_outside_is_refused() {
        let s = server();
        let nx = ask(&s, "nope.shop.svc.cluster.local.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        let out = ask(&s, "example.com.", RecordType::A).await;
        assert_eq!(out.metadata.response_code, ResponseCode::Refused);
        assert!(out.answers.is_empty());
        // A name that merely ends with the domain's text is outside it.
        let lookalike = ask(&s, "evilcluster.local.", RecordType::A).await;
        assert_eq!(lookalike.metadata.response_code, ResponseCode::Refused);
        let failed = ask(&s, "broken.svc.cluster.local.", RecordType::A).await;
        assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn garbage_gets_formerr_and_bad_domains_are_refused() {
        let s = server();
        let reply = s.answer(&[0x12, 0x34, 0xff]).await.unwrap();
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(s.answer(&[1]).await.is_none());
        let err = DnsServer::new("", Arc::new(Fixed(BTreeMap::new())))
            .err()
            .unwrap();
        assert!(err.to_string().contains("cluster domain"), "{err}");
    }

    #[tokio::test]
    async fn serves_over_udp_until_shut_down() {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(Arc::new(server()).serve_udp(socket, async {
            let _ = stopped.await;
        }));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web.shop.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        client.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
        let mut buf = [0u8; 1500];
        let (len, _) = client.recv_from(&mut buf).await.unwrap();
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(reply.answers.len(), 1);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn serves_over_tcp_without_truncation() {
        let many: Vec<IpAddr> = (1..=60u8).map(|i| IpAddr::from([10, 96, 1, i])).collect();
        let names = BTreeMap::from([("big.svc.cluster.local".to_string(), many)]);
        let server = Arc::new(DnsServer::new("cluster.local", Arc::new(Fixed(names))).unwrap());
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("big.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let wire = q.to_vec().unwrap();
        // Over UDP without EDNS, 60 records do not fit in 512 bytes.
        let udp = Message::from_vec(&server.answer(&wire).await.unwrap()).unwrap();
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_tcp(listener, async {
            let _ = stopped.await;
        }));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            stream.write_u16(wire.len() as u16).await.unwrap();
            stream.write_all(&wire).await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut reply = vec![0u8; usize::from(len)];
            stream.read_exact(&mut reply).await.unwrap();
            let reply = Message::from_vec(&reply).unwrap();
            assert!(!reply.metadata.truncation);
            assert_eq!(reply.answers.len(), 60);
        }
        drop(stream);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
