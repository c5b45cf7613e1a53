//! The addresses the VA may connect to. Some are refused whatever the configuration
//! says ([`Reserved`]: unspecified, loopback, link-local — the cloud metadata address
//! among them —, multicast, broadcast and the reserved block, also when written as
//! IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 addresses), so that no account can
//! make the CA read a service on its own host or its cloud's metadata. Private ranges stay
//! allowed (a private CA validates private hosts); `[validation] deny_ranges` adds ranges.
//! Loopback is allowed only behind the explicit test switch `allow_loopback`.
//!
//! Checked for every address the VA would contact: looked-up addresses (on each lookup,
//! so a DNS answer that changes between lookups is checked again), IP identifiers,
//! IP-literal redirects, and the address a connection was actually made to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One CIDR range such as `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `ADDR/PREFIX` or a bare address.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (addr, prefix) = match spec.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (spec, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{spec:?} is not an address range (e.g. 10.0.0.0/8)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{spec:?} has a prefix length outside 0..={max}"))?,
        };
        // `::ffff:10.0.0.0/104` is 10.0.0.0/8: addresses are compared in IPv4 form.
        let (network, prefix) = match network {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (network.to_canonical(), prefix - 96)
            }
            _ => (network, prefix),
        };
        Ok(Self {
            network: mask(network, prefix),
            prefix,
        })
    }

    /// Whether `ip` lies inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Kinds of address the VA never connects to, whatever the configuration says (loopback
/// only behind `allow_loopback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// `0.0.0.0/8`, `::` (which reach the local host on most systems).
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16` (the cloud metadata address among them), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255` and the rest of the reserved block `240.0.0.0/4`.
    Broadcast,
    /// A cloud metadata service outside the link-local range: `fd00:ec2::254` (AWS over
    /// IPv6), `100.100.100.200` (Alibaba Cloud).
    Metadata,
}

/// Metadata service addresses that are not link-local.
const METADATA_V4: [Ipv4Addr; 1] = [Ipv4Addr::new(100, 100, 100, 200)];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

impl Reserved {
    /// The kind of `ip`, if it is one the VA never connects to. IPv6 forms that stand for
    /// an IPv4 address (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are
    /// judged by that IPv4 address.
    pub fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) if v6.is_unspecified() => Some(Self::Unspecified),
            IpAddr::V6(v6) if v6.is_loopback() => Some(Self::Loopback),
            IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some(Self::LinkLocal),
            IpAddr::V6(v6) if v6.is_multicast() => Some(Self::Multicast),
            IpAddr::V6(v6) if METADATA_V6.contains(&v6) => Some(Self::Metadata),
            IpAddr::V6(v6) => embedded_ipv4(v6).and_then(Self::of_v4),
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Option<Self> {
        let first = ip.octets()[0];
        if first == 0 {
            Some(Self::Unspecified)
        } else if ip.is_loopback() {
            Some(Self::Loopback)
        } else if ip.is_link_local() {
            Some(Self::LinkLocal)
        } else if ip.is_multicast() {
            Some(Self::Multicast)
        } else if first >= 240 {
            Some(Self::Broadcast)
        } else if METADATA_V4.contains(&ip) {
            Some(Self::Metadata)
        } else {
            None
        }
    }

    /// What the address is, for a sentence ("… is a loopback address").
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast or reserved address",
            Self::Metadata => "a cloud metadata service address",
        }
    }
}

/// The IPv4 address an IPv6 address stands for, if it is written as one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 with the well-known prefix
/// (`64:ff9b::a.b.c.d`) or the local-use one with a /96 (`64:ff9b:1::a.b.c.d`; RFC 8215
/// lets a network embed at other lengths too — list such a prefix in `deny_ranges`), or
/// 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    if let Some(mapped) = v6.to_ipv4_mapped() {
        Some(mapped)
    } else if s[..6] == [0; 6]
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || s[..6] == [0x64, 0xff9b, 1, 0, 0, 0]
    {
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])))
    } else {
        None
    }
}

/// The VA refused to contact an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeniedAddress {
    /// An address of a kind the VA never connects to.
    #[error("{ip} is {}, which the CA never connects to", .kind.describe())]
    Reserved {
        /// The address.
        ip: IpAddr,
        /// Which reserved kind it is.
        kind: Reserved,
    },
    /// An address inside a configured `deny_ranges` entry.
    #[error("{ip} lies in {range}, a range in validation.deny_ranges")]
    Configured {
        /// The address.
        ip: IpAddr,
        /// The `deny_ranges` entry it lies in.
        range: IpRange,
    },
    /// Every address a name resolved to was refused.
    #[error("{name} resolves only to addresses the CA does not connect to: {}", list(.refused))]
    NoneAllowed {
        /// The name looked up.
        name: String,
        /// Each address it resolved to, and why it was refused.
        refused: Vec<DeniedAddress>,
    },
}

fn list(refused: &[DeniedAddress]) -> String {
    refused
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl DeniedAddress {
    /// The sentence a client may see: the address and its kind, never the operator's
    /// configured ranges.
    pub fn client_detail(&self) -> String {
        match self {
            Self::Reserved { ip, kind } => format!(
                "the CA does not connect to {ip}: it is {}",
                kind.describe()
            ),
            Self::Configured { ip, .. } => format!(
                "the CA does not connect to {ip}: it lies in an address range this CA does not validate"
            ),
            Self::NoneAllowed { name, refused } => {
                let each: Vec<String> = refused.iter().filter_map(Self::short).collect();
                format!(
                    "{name} resolves only to addresses the CA does not connect to: {}",
                    each.join(", ")
                )
            }
        }
    }

    /// "ADDRESS (why)", for a list.
    fn short(&self) -> Option<String> {
        match self {
            Self::Reserved { ip, kind } => Some(format!("{ip} ({})", kind.describe())),
            Self::Configured { ip, .. } => Some(format!(
                "{ip} (in an address range this CA does not validate)"
            )),
            Self::NoneAllowed { .. } => None,
        }
    }
}

/// Which addresses the VA refuses: the [`Reserved`] kinds (loopback only unless
/// allowed) and the configured ranges (none by default).
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    ranges: Vec<IpRange>,
    allow_loopback: bool,
}

impl DenyList {
    /// Parses the configured ranges; loopback stays refused.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, String> {
        let ranges = specs
            .iter()
            .map(|s| IpRange::parse(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ranges,
            allow_loopback: false,
        })
    }

    /// Allows (or refuses) loopback addresses: the test switch
    /// `validation.allow_loopback`. Every other reserved kind stays refused.
    pub fn allowing_loopback(mut self, allow: bool) -> Self {
        self.allow_loopback = allow;
        self
    }

    /// Whether loopback addresses may be contacted.
    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Refuses `ip` when it is reserved or a configured range holds it.
    pub fn check(&self, ip: IpAddr) -> Result<(), DeniedAddress> {
        let ip = ip.to_canonical();
        match Reserved::of(ip) {
            Some(Reserved::Loopback) if self.allow_loopback => {}
            Some(kind) => return Err(DeniedAddress::Reserved { ip, kind }),
            None => {}
        }
        // A configured IPv4 range also holds the IPv6 forms of its addresses.
        let as_v4 = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let held = |r: &IpRange| r.contains(ip) || as_v4.is_some_and(|v4| r.contains(v4));
        match self.ranges.iter().copied().find(held) {
            Some(range) => Err(DeniedAddress::Configured { ip, range }),
            None => Ok(()),
        }
    }

    /// The addresses of `name` the VA may contact; an error when none remain.
    pub fn allowed(&self, name: &str, ips: Vec<IpAddr>) -> Result<Vec<IpAddr>, DeniedAddress> {
        let mut ok = Vec::with_capacity(ips.len());
        let mut refused = Vec::new();
        for ip in ips {
            match self.check(ip) {
                Ok(()) => ok.push(ip),
                Err(denied) => refused.push(denied),
            }
        }
        if ok.is_empty() && !refused.is_empty() {
            return Err(DeniedAddress::NoneAllowed {
                name: name.to_owned(),
                refused,
            });
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_their_addresses_only() {
        let list =
            DenyList::parse(&["10.0.0.0/8", "fd00::/8", "192.0.2.7", "127.0.0.0/8"]).unwrap();
        for denied in [
            "10.1.2.3",
            "fdab::1",
            "192.0.2.7",
            "127.0.0.1",
            "::ffff:10.9.9.9",
        ] {
            assert!(
                list.check(denied.parse().unwrap()).is_err(),
                "{denied} passed"
            );
        }
        for ok in [
            "11.0.0.1",
            "fec0::1",
            "192.0.2.8",
            "2001:db8::1",
            "172.16.0.1",
        ] {
            assert!(list.check(ok.parse().unwrap()).is_ok(), "{ok} was denied");
        }
        let kept = list
            .allowed(
                "x.test",
                vec!["10.0.0.1".parse().unwrap(), "203.0.113.1".parse().unwrap()],
            )
            .unwrap();
        assert_eq!(kept, vec!["203.0.113.1".parse::<IpAddr>().unwrap()]);
        // The IPv6 forms of a listed IPv4 address are listed too (NAT64, 6to4,
        // compatible), and a range written in mapped form is its IPv4 range.
        for v6 in [
            "64:ff9b::a00:5",
            "64:ff9b:1::a00:5",
            "2002:a00:5::1",
            "::10.0.0.5",
        ] {
            assert!(list.check(v6.parse().unwrap()).is_err(), "{v6} passed");
        }
        let mapped = DenyList::parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.check("10.9.8.7".parse().unwrap()).is_err());
        assert!(mapped.check("11.0.0.1".parse().unwrap()).is_ok());
        let err = list
            .allowed("x.test", vec!["10.0.0.1".parse().unwrap()])
            .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        // The client's sentence names the address, never the configured range.
        let told = err.client_detail();
        assert!(told.contains("10.0.0.1") && !told.contains("/8"), "{told}");
    }

    /// Every reserved kind, in each of its spellings, is refused by an empty
    /// configuration; loopback alone is let through by the test switch; private and
    /// public unicast addresses pass.
    #[test]
    fn reserved_addresses_are_refused_whatever_the_configuration() {
        let strict = DenyList::default();
        let loopback_ok = DenyList::default().allowing_loopback(true);
        for (ip, kind) in [
            ("0.0.0.0", Reserved::Unspecified),
            ("0.1.2.3", Reserved::Unspecified),
            ("::", Reserved::Unspecified),
            ("::ffff:0.0.0.0", Reserved::Unspecified),
            ("127.0.0.1", Reserved::Loopback),
            ("127.255.0.9", Reserved::Loopback),
            ("::1", Reserved::Loopback),
            ("::ffff:127.0.0.1", Reserved::Loopback),
            ("::127.0.0.1", Reserved::Loopback),
            ("64:ff9b::7f00:1", Reserved::Loopback),
            ("2002:7f00:1::1", Reserved::Loopback),
            ("169.254.169.254", Reserved::LinkLocal),
            ("::ffff:169.254.169.254", Reserved::LinkLocal),
            ("64:ff9b::a9fe:a9fe", Reserved::LinkLocal),
            ("fe80::1", Reserved::LinkLocal),
            ("febf::1", Reserved::LinkLocal),
            ("224.0.0.1", Reserved::Multicast),
            ("239.255.255.250", Reserved::Multicast),
            ("ff02::1", Reserved::Multicast),
            ("255.255.255.255", Reserved::Broadcast),
            ("240.0.0.1", Reserved::Broadcast),
            ("::ffff:255.255.255.255", Reserved::Broadcast),
            ("100.100.100.200", Reserved::Metadata),
            ("fd00:ec2::254", Reserved::Metadata),
            ("64:ff9b:1::a9fe:a9fe", Reserved::LinkLocal),
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            match strict.check(addr) {
                Err(DeniedAddress::Reserved { kind: k, .. }) => assert_eq!(k, kind, "{ip}"),
                other => panic!("{ip} was not refused as {kind:?}: {other:?}"),
            }
            let relaxed = loopback_ok.check(addr);
            assert_eq!(
                relaxed.is_ok(),
                kind == Reserved::Loopback,
                "{ip}: {relaxed:?}"
            );
        }
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "203.0.113.9",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(
                strict.check(ip.parse().unwrap()).is_ok(),
                "{ip} was refused"
            );
        }
        // A name resolving to a mix keeps the usable addresses; to none, names them all.
        let ips = vec!["127.0.0.1".parse().unwrap(), "0.0.0.0".parse().unwrap()];
        let err = strict.allowed("mixed.test", ips.clone()).unwrap_err();
        assert_eq!(
            err.client_detail(),
            "mixed.test resolves only to addresses the CA does not connect to: 127.0.0.1 (a loopback address), 0.0.0.0 (an unspecified address)"
        );
        assert_eq!(
            loopback_ok.allowed("mixed.test", ips).unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in ["10.0.0.0/33", "fd00::/129", "nonsense", "10.0.0/8", ""] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            IpRange::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
