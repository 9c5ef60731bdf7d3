//! Where the gateway may connect: the egress policy for upstream MCP servers.
//!
//! Any tenant may publish a service, so an upstream URL is untrusted input: without a policy the
//! gateway would fetch loopback, the private network or a cloud's metadata service for whoever
//! asks, and hand back the body. So by default an upstream must be `https` and every address it
//! connects to must be public. Refused are loopback, RFC 1918 and unique-local, link-local
//! (and with it `169.254.169.254`), CGNAT, multicast, broadcast, unspecified, reserved and
//! documentation ranges, and the IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms of any of
//! those; and the names `localhost` (with `*.localhost`) and the cloud metadata names.
//!
//! The check runs where the connection is made: the gateway's HTTP client resolves names through
//! [`EgressResolver`], which drops every refused address (so a name that resolves to loopback at
//! call time, DNS rebinding included, is refused however it resolved at registration), and a
//! URL with an IP literal (which the client does not resolve) is checked before the request.
//! Registration checks the same rules, to tell the publisher at once.
//!
//! An operator running MCP servers on its own network allows them by host (`allow_hosts`: a name
//! or address, optionally with `:port`, which may also use `http`) or by network (`allow_cidrs`),
//! or allows plain `http` to public addresses (`allow_http`). Agents are told only that the
//! service cannot be reached, the same words as for a connection that failed; the publisher and
//! the operator's log are told what was refused and how to allow it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};

/// The `[egress]` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Hosts an upstream may name whatever they resolve to, over `http` too: `localhost`,
    /// `mcp.internal`, `127.0.0.1:8080` (with a port, only that port).
    pub allow_hosts: Vec<String>,
    /// Networks upstreams may connect to although they are not public: `10.1.0.0/16`, `fd00::/8`.
    pub allow_cidrs: Vec<String>,
    /// Whether upstreams may use plain `http` to public addresses (never by default).
    pub allow_http: bool,
}

/// Why an upstream is refused. Its text is for the publisher and the operator, never for agents.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{scheme}:// upstreams are refused: use https, or an operator can set egress.allow_http")]
    Scheme { scheme: String },
    #[error(
        "{address} is {kind}, which upstreams may not reach; an operator can allow it with egress.allow_cidrs \
         (or its host with egress.allow_hosts)"
    )]
    Address { address: IpAddr, kind: &'static str },
    #[error("{host} is {kind}, which upstreams may not name; an operator can allow it with egress.allow_hosts")]
    Name { host: String, kind: &'static str },
    #[error(
        "{host} resolves to no address upstreams may reach ({refused}); an operator can allow it with egress.allow_hosts"
    )]
    Resolved { host: String, refused: String },
}

#[derive(Debug, thiserror::Error)]
#[error("egress.allow_cidrs: {0:?} is not a network like 10.1.0.0/16 or fd00::/8")]
pub struct BadCidr(String);

/// The rules, compiled from [`EgressConfig`].
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
    allow_http: bool,
}

/// Names refused whatever they resolve to (they serve cloud instance metadata, or the host itself).
const REFUSED_NAMES: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

impl EgressPolicy {
    pub fn new(config: &EgressConfig) -> Result<Self, BadCidr> {
        let nets = config
            .allow_cidrs
            .iter()
            .map(|raw| raw.trim().parse::<IpNet>().map_err(|_| BadCidr(raw.clone())))
            .collect::<Result<_, _>>()?;
        let hosts = config.allow_hosts.iter().map(|host| host.trim().to_ascii_lowercase()).collect();
        Ok(Self { hosts, nets, allow_http: config.allow_http })
    }

    /// Whether the operator allowed this host (by name or address, with or without the URL's port).
    fn host_allowed(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.hosts.iter().any(|allowed| {
            let allowed = allowed.as_str();
            allowed.trim_start_matches('[').trim_end_matches(']') == host
                || port.is_some_and(|port| {
                    allowed.rsplit_once(':').is_some_and(|(name, p)| {
                        name.trim_start_matches('[').trim_end_matches(']') == host && p == port.to_string()
                    })
                })
        })
    }

    /// Whether the operator allowed this name on some port: what the resolver, which sees no
    /// port, may trust. (The request was already held to its entry's port by [`Self::check_url`].)
    fn name_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|allowed| {
            let name = match allowed.rsplit_once(':') {
                Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => allowed.as_str(),
            };
            name == host
        })
    }

    /// The rules a URL can be checked against without resolving it: the scheme, an IP literal,
    /// a refused name. An allowed host passes whole.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let host = url.host_str().unwrap_or_default();
        if self.host_allowed(host, url.port_or_known_default()) {
            return Ok(());
        }
        if url.scheme() != "https" && !(url.scheme() == "http" && self.allow_http) {
            return Err(Refusal::Scheme { scheme: url.scheme().to_owned() });
        }
        // The URL parser has already normalised every IPv4 spelling (`0x7f000001`, `2130706433`,
        // `127.1`) to dotted decimal, and IPv6 literals come in brackets.
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(address) => self.check_address(address),
            Err(_) => check_name(host),
        }
    }

    /// Whether an address may be connected to.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Refusal> {
        if self.nets.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        match not_public(address) {
            Some(kind) => Err(Refusal::Address { address, kind }),
            None => Ok(()),
        }
    }

    /// What a publisher registering `url` is told: the rules of [`EgressPolicy::check_url`], and,
    /// for a name, what it resolves to now. A name that does not resolve yet is accepted (the
    /// check at every call decides).
    pub async fn check_registration(&self, url: &Url, lookup: &Lookup) -> Result<(), Refusal> {
        self.check_url(url)?;
        let host = url.host_str().unwrap_or_default();
        if host.starts_with('[')
            || host.parse::<IpAddr>().is_ok()
            || self.host_allowed(host, url.port_or_known_default())
        {
            return Ok(());
        }
        match lookup.resolve(host).await {
            Err(_) => Ok(()),
            Ok(_) => self.resolve(host, lookup).await.map(|_| ()),
        }
    }

    /// Resolves `host` (with `lookup`) and keeps the addresses this policy allows.
    async fn resolve(&self, host: &str, lookup: &Lookup) -> Result<Vec<SocketAddr>, Refusal> {
        let resolved = lookup.resolve(host).await.map_err(|err| Refusal::Resolved {
            host: host.to_owned(),
            refused: format!("it does not resolve: {err}"),
        })?;
        if self.name_allowed(host) {
            return Ok(resolved);
        }
        let mut refused = Vec::new();
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match self.check_address(addr.ip()) {
                Ok(()) => true,
                Err(why) => {
                    refused.push(why.to_string());
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            let refused = if refused.is_empty() { "no address".to_owned() } else { refused.join("; ") };
            return Err(Refusal::Resolved { host: host.to_owned(), refused });
        }
        Ok(allowed)
    }
}

fn check_name(name: &str) -> Result<(), Refusal> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(Refusal::Name { host: name, kind: "this host (localhost)" });
    }
    if REFUSED_NAMES.contains(&name.as_str()) {
        return Err(Refusal::Name { host: name, kind: "a cloud metadata service" });
    }
    Ok(())
}

/// What kind of address this is, when it is not a public unicast one.
pub fn not_public(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 8, "an unspecified address (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "a private address (10.0.0.0/8)"),
        ([100, 64, 0, 0], 10, "a carrier-grade NAT address (100.64.0.0/10)"),
        ([127, 0, 0, 0], 8, "a loopback address (127.0.0.0/8)"),
        ([169, 254, 0, 0], 16, "a link-local address (169.254.0.0/16, cloud metadata among them)"),
        ([172, 16, 0, 0], 12, "a private address (172.16.0.0/12)"),
        ([192, 0, 0, 0], 24, "a reserved address (192.0.0.0/24)"),
        ([192, 0, 2, 0], 24, "a documentation address (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "a reserved address (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "a private address (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "a benchmarking address (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "a documentation address (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "a documentation address (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "a multicast address (224.0.0.0/4)"),
        ([240, 0, 0, 0], 4, "a reserved or broadcast address (240.0.0.0/4)"),
    ];
    RANGES.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map(|(_, _, kind)| *kind)
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let embedded_v4 = |from: usize| {
        let octets = ip.octets();
        Ipv4Addr::new(octets[from], octets[from + 1], octets[from + 2], octets[from + 3])
    };
    if ip.is_unspecified() {
        return Some("an unspecified address (::)");
    }
    if ip.is_loopback() {
        return Some("a loopback address (::1)");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): the IPv4 address decides.
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        return not_public_v4(embedded_v4(12)).map(|_| "an IPv4-mapped form of a non-public address");
    }
    // NAT64 (64:ff9b::/96): the embedded IPv4 address decides; the local-use prefix is private.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return not_public_v4(embedded_v4(12)).map(|_| "a NAT64 form of a non-public address");
    }
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1 {
        return Some("a local-use NAT64 address (64:ff9b:1::/48)");
    }
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
    if segments[0] == 0x2002 {
        return not_public_v4(embedded_v4(2)).map(|_| "a 6to4 form of a non-public address");
    }
    match segments[0] {
        s if s & 0xff00 == 0xff00 => Some("a multicast address (ff00::/8)"),
        s if s & 0xffc0 == 0xfe80 => Some("a link-local address (fe80::/10)"),
        s if s & 0xffc0 == 0xfec0 => Some("a site-local address (fec0::/10)"),
        s if s & 0xfe00 == 0xfc00 => Some("a unique-local (private) address (fc00::/7)"),
        0x2001 if segments[1] == 0x0db8 => Some("a documentation address (2001:db8::/32)"),
        0x2001 if segments[1] == 0 => Some("a Teredo address (2001::/32)"),
        0x0100 if segments[1..4] == [0, 0, 0] => Some("a discard-only address (100::/64)"),
        _ => None,
    }
}

/// How names are looked up: the system's resolver, with names the tests pin to addresses.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// Answers given instead of the system's (tests: a name whose answer changes).
    pinned: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
}

impl Lookup {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        let pinned = self.pinned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(host).cloned();
        if let Some(addresses) = pinned {
            return Ok(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect());
        }
        Ok(tokio::net::lookup_host((host, 0)).await?.collect())
    }

    /// Answers `host` with `addresses` from now on instead of asking the system (tests only).
    pub fn pin(&self, host: &str, addresses: Vec<IpAddr>) {
        self.pinned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(host.to_owned(), addresses);
    }
}

/// The gateway's HTTP client resolves every upstream name through this: refused addresses never
/// reach a connect.
#[derive(Clone, Debug)]
pub struct EgressResolver {
    pub policy: Arc<EgressPolicy>,
    pub lookup: Lookup,
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            check_name(&host).or_else(|refusal| match this.policy.name_allowed(&host) {
                true => Ok(()),
                false => Err(refusal),
            })?;
            let addresses = this.policy.resolve(&host, &this.lookup).await?;
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
#[path = "egress/tests.rs"]
mod tests;
