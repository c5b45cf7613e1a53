//! A small authoritative DNS server on loopback, for tests and local experiments: point
//! `[validation] dns_resolver` at it and set the records each case needs (TXT, CAA with
//! any flags and tags, CNAME, A/AAAA), or make a name answer SERVFAIL or nothing at all.
//!
//! It answers over UDP (truncating what does not fit) and TCP, follows CNAMEs inside its
//! own table (as an authoritative server does, at most 8 links) and answers A queries for
//! unknown names with a default address (127.0.0.1), like pebble-challtestsrv. Other
//! queries for names without records answer NXDOMAIN.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, NULL, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// How a name answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers from the zone.
    #[default]
    Normal,
    /// Every query answers SERVFAIL.
    ServFail,
    /// Queries get no answer (the client times out).
    Silent,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    txt: Vec<String>,
    /// (flags, tag, value) as on the wire.
    caa: Vec<(u8, String, String)>,
    cname: Option<String>,
    addrs: Vec<IpAddr>,
    behaviour: Behaviour,
}

#[derive(Debug, Default)]
struct Zone {
    names: HashMap<String, Entry>,
    default_a: Option<Ipv4Addr>,
    queries: Vec<String>,
}

/// The running server; stops when dropped.
pub struct TestDns {
    /// The UDP and TCP address it answers on.
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<JoinHandle<()>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl TestDns {
    /// Starts on a free loopback port (the same port for UDP and TCP).
    pub async fn start() -> std::io::Result<Self> {
        let zone = Arc::new(Mutex::new(Zone {
            default_a: Some(Ipv4Addr::LOCALHOST),
            ..Zone::default()
        }));
        // Find a port free for both protocols (bounded attempts).
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = bound.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free port for UDP and TCP",
            )
        })?;
        let udp = Arc::new(udp);
        let z = zone.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = answer(&z, &buf[..n], true) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        });
        let z = zone.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    continue;
                };
                let z = z.clone();
                tokio::spawn(async move {
                    // One connection serves queries until the client closes it.
                    for _ in 0..64 {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut msg).await.is_err() {
                            return;
                        }
                        match answer(&z, &msg, false) {
                            Some(reply) => {
                                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                                out.extend_from_slice(&reply);
                                if stream.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                            // Silent: hold the connection open without answering.
                            None => {
                                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            zone,
            tasks: vec![udp_task, tcp_task],
        })
    }

    fn with_entry(&self, name: &str, f: impl FnOnce(&mut Entry)) {
        let mut zone = self.zone.lock().unwrap();
        f(zone.names.entry(key(name)).or_default());
    }

    /// Replaces the TXT records of `name`.
    pub fn set_txt(&self, name: &str, values: &[&str]) {
        self.with_entry(name, |e| {
            e.txt = values.iter().map(|v| v.to_string()).collect()
        });
    }

    /// Adds one TXT record to `name`.
    pub fn add_txt(&self, name: &str, value: &str) {
        self.with_entry(name, |e| e.txt.push(value.to_owned()));
    }

    /// Removes one TXT record (or all with `None`) from `name`.
    pub fn remove_txt(&self, name: &str, value: Option<&str>) {
        self.with_entry(name, |e| match value {
            Some(v) => e.txt.retain(|t| t != v),
            None => e.txt.clear(),
        });
    }

    /// Adds a CAA record (`flags` 128 = critical) to `name`.
    pub fn add_caa(&self, name: &str, flags: u8, tag: &str, value: &str) {
        self.with_entry(name, |e| {
            e.caa.push((flags, tag.to_owned(), value.to_owned()))
        });
    }

    /// Makes `name` a CNAME to `target`.
    pub fn set_cname(&self, name: &str, target: &str) {
        self.with_entry(name, |e| e.cname = Some(key(target)));
    }

    /// Replaces the A/AAAA records of `name`.
    pub fn set_addrs(&self, name: &str, addrs: &[IpAddr]) {
        self.with_entry(name, |e| e.addrs = addrs.to_vec());
    }

    /// Sets how `name` answers.
    pub fn set_behaviour(&self, name: &str, behaviour: Behaviour) {
        self.with_entry(name, |e| e.behaviour = behaviour);
    }

    /// Forgets everything about `name`.
    pub fn clear(&self, name: &str) {
        self.zone.lock().unwrap().names.remove(&key(name));
    }

    /// The address A queries for names without records answer (127.0.0.1 at start);
    /// `None` makes them NXDOMAIN (a resolver that does not know a segment's names).
    pub fn set_default_a(&self, addr: Option<Ipv4Addr>) {
        self.zone.lock().unwrap().default_a = addr;
    }

    /// Queries received so far, as `"TYPE name"`.
    pub fn queries(&self) -> Vec<String> {
        self.zone.lock().unwrap().queries.clone()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Builds the reply to one query; `None` when the name is silent (or the query unreadable).
/// Over UDP, a reply larger than the client's EDNS payload size (512 bytes without EDNS)
/// goes out truncated (TC set, no answers), and the client asks again over TCP.
fn answer(zone: &Mutex<Zone>, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    let query = request.queries().first()?.clone();
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_query(query.clone());
    let qtype = query.query_type();
    let mut zone = zone.lock().unwrap();
    let mut name = key(&query.name().to_ascii());
    zone.queries.push(format!("{qtype} {name}"));
    let mut code = ResponseCode::NoError;
    for _ in 0..8 {
        let entry = zone.names.get(&name).cloned();
        let owner = Name::from_ascii(format!("{name}.")).ok()?;
        let Some(entry) = entry else {
            match (qtype, zone.default_a) {
                (RecordType::A, Some(a)) => {
                    reply.add_answer(Record::from_rdata(owner, 0, RData::A(A(a))));
                }
                (RecordType::AAAA, Some(_)) => {}
                _ => code = ResponseCode::NXDomain,
            }
            break;
        };
        match entry.behaviour {
            Behaviour::Normal => {}
            Behaviour::ServFail => {
                code = ResponseCode::ServFail;
                reply.take_answers();
                break;
            }
            Behaviour::Silent => return None,
        }
        if let (Some(target), false) = (&entry.cname, qtype == RecordType::CNAME) {
            let target_name = Name::from_ascii(format!("{target}.")).ok()?;
            reply.add_answer(Record::from_rdata(
                owner,
                0,
                RData::CNAME(CNAME(target_name)),
            ));
            name = target.clone();
            continue;
        }
        let records: Vec<RData> = match qtype {
            RecordType::TXT => entry
                .txt
                .iter()
                .map(|t| RData::TXT(TXT::new(vec![t.clone()])))
                .collect(),
            RecordType::CAA => entry
                .caa
                .iter()
                .map(|(flags, tag, value)| {
                    let mut wire = vec![*flags, tag.len() as u8];
                    wire.extend_from_slice(tag.as_bytes());
                    wire.extend_from_slice(value.as_bytes());
                    RData::Unknown {
                        code: RecordType::CAA,
                        rdata: NULL::with(wire),
                    }
                })
                .collect(),
            RecordType::A => {
                let mut v: Vec<RData> = entry
                    .addrs
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(RData::A(A(*v4))),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                if v.is_empty() && entry.addrs.is_empty() {
                    if let Some(a) = zone.default_a {
                        v.push(RData::A(A(a)));
                    }
                }
                v
            }
            RecordType::AAAA => entry
                .addrs
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(v6) => Some(RData::AAAA(AAAA(*v6))),
                    IpAddr::V4(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for r in records {
            reply.add_answer(Record::from_rdata(owner.clone(), 0, r));
        }
        break;
    }
    reply.set_response_code(code);
    let wire = reply.to_vec().ok()?;
    let room = request
        .extensions()
        .as_ref()
        .map_or(512, |edns| usize::from(edns.max_payload()).max(512));
    if udp && wire.len() > room {
        reply.take_answers();
        reply.set_truncated(true);
        return reply.to_vec().ok();
    }
    Some(wire)
}
