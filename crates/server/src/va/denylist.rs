//! Address ranges the VA never connects to (`[validation] deny_ranges`), so that a CA
//! inside a private network cannot be used to probe it. Checked for every address the
//! VA would contact: looked-up addresses, IP identifiers and IP-literal redirects.

use std::fmt;
use std::net::IpAddr;

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

/// The VA refused to contact an address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DeniedAddress(pub String);

/// The configured deny-list (empty by default: everything may be contacted).
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    ranges: Vec<IpRange>,
}

impl DenyList {
    /// Parses the configured ranges.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, String> {
        let ranges = specs
            .iter()
            .map(|s| IpRange::parse(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { ranges })
    }

    /// The range that denies `ip`, if any.
    pub fn denying(&self, ip: IpAddr) -> Option<IpRange> {
        self.ranges.iter().copied().find(|r| r.contains(ip))
    }

    /// Refuses `ip` when a range holds it.
    pub fn check(&self, ip: IpAddr) -> Result<(), DeniedAddress> {
        match self.denying(ip) {
            Some(range) => Err(DeniedAddress(format!(
                "the CA does not connect to {ip}: it lies in {range}, a range this CA's validation.deny_ranges excludes"
            ))),
            None => Ok(()),
        }
    }

    /// The addresses of `name` the VA may contact; an error when none remain.
    pub fn allowed(&self, name: &str, ips: Vec<IpAddr>) -> Result<Vec<IpAddr>, DeniedAddress> {
        if self.ranges.is_empty() {
            return Ok(ips);
        }
        let (ok, denied): (Vec<IpAddr>, Vec<IpAddr>) =
            ips.into_iter().partition(|ip| self.denying(*ip).is_none());
        if ok.is_empty() {
            let list: Vec<String> = denied.iter().map(|ip| ip.to_string()).collect();
            return Err(DeniedAddress(format!(
                "{name} resolves only to addresses this CA does not connect to ({}; see validation.deny_ranges)",
                list.join(", ")
            )));
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
        for ok in ["11.0.0.1", "fe80::1", "192.0.2.8", "2001:db8::1", "::1"] {
            assert!(list.check(ok.parse().unwrap()).is_ok(), "{ok} was denied");
        }
        let kept = list
            .allowed(
                "x.test",
                vec!["10.0.0.1".parse().unwrap(), "203.0.113.1".parse().unwrap()],
            )
            .unwrap();
        assert_eq!(kept, vec!["203.0.113.1".parse::<IpAddr>().unwrap()]);
        let err = list
            .allowed("x.test", vec!["10.0.0.1".parse().unwrap()])
            .unwrap_err();
        assert!(err.0.contains("10.0.0.1"), "{err}");
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
