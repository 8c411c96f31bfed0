//! The answer to one DNS query: a pure function of the query's bytes and a zone
//! snapshot. Parsing and writing the wire format is `simple-dns`'s job; this module only
//! decides what to say.
//!
//! Any bytes get an answer or `None` (dropped): a datagram too short for a header, a
//! response (never answered, so two servers cannot bounce packets off each other) and
//! a header the library refuses are dropped; everything else gets a reply carrying the
//! query's id.

use super::zone::{DnsZone, TTL};
use simple_dns::rdata::{RData, A, AAAA, NS, OPT, SOA};
use simple_dns::{
    Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, OPCODE, QCLASS, QTYPE, RCODE, TYPE,
};
use std::net::IpAddr;

/// How the reply travels: over UDP it must fit the client's buffer (512 bytes, or its
/// EDNS size up to 1232), else it is cut to the header with TC set and the client
/// retries over TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// EDNS payload size we advertise and accept at most: the DNS Flag Day 2020 value,
/// which avoids IP fragmentation on every common path.
const EDNS_SIZE: u16 = 1232;
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

/// The reply to `query`, or `None` when it is dropped.
pub fn answer(query: &[u8], zone: &DnsZone, transport: Transport) -> Option<Vec<u8>> {
    let packet = match Packet::parse(query) {
        Ok(p) => p,
        Err(_) => return format_error(query),
    };
    if packet.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => packet
            .opt()
            .map_or(512, |o| o.udp_packet_size.clamp(512, EDNS_SIZE))
            .into(),
    };
    let reply = reply_to(&packet, zone);
    let bytes = reply.build_bytes_vec_compressed().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut cut = reply;
    cut.answers.clear();
    cut.name_servers.clear();
    cut.additional_records.clear();
    cut.set_flags(PacketFlag::TRUNCATION);
    cut.build_bytes_vec_compressed().ok()
}

/// A query the library cannot parse past its header: FORMERR with the query's id and
/// no sections. The header is re-read by the library from a copy whose section counts
/// are zeroed, so that the id comes from a parser, not from byte offsets of our own.
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    let mut header = query.get(..12)?.to_vec();
    header[4..].fill(0);
    let parsed = Packet::parse(&header).ok()?;
    if parsed.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let mut reply = Packet::new_reply(parsed.id());
    *reply.opcode_mut() = parsed.opcode();
    *reply.rcode_mut() = RCODE::FormatError;
    reply.build_bytes_vec().ok()
}

fn reply_to<'a>(query: &Packet<'a>, zone: &'a DnsZone) -> Packet<'a> {
    let mut reply = Packet::new_reply(query.id());
    *reply.opcode_mut() = query.opcode();
    if query.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions = query.questions.clone();
    if query.opt().is_some() {
        *reply.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: EDNS_SIZE,
            version: 0,
        });
    }
    if query.opcode() != OPCODE::StandardQuery {
        *reply.rcode_mut() = RCODE::NotImplemented;
        return reply;
    }
    let [question] = query.questions.as_slice() else {
        *reply.rcode_mut() = RCODE::FormatError;
        return reply;
    };
    // No zone transfers (RFC 5936 §2.2.1: REFUSED), and only the Internet class.
    let transfer = matches!(question.qtype, QTYPE::AXFR | QTYPE::IXFR);
    if transfer || !matches!(question.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY) {
        *reply.rcode_mut() = RCODE::Refused;
        return reply;
    }
    let Some(owner) = owner_in_zone(question, zone) else {
        *reply.rcode_mut() = RCODE::Refused;
        return reply;
    };
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    let qname = question.qname.clone();
    if owner == zone.domain {
        apex(&mut reply, question.qtype, qname, zone);
        return reply;
    }
    match owner_records(&owner, zone) {
        Some(addresses) => {
            reply.answers = addresses
                .iter()
                .filter(|ip| wanted(question.qtype, ip))
                .map(|ip| address_record(qname.clone(), *ip))
                .collect();
        }
        None => *reply.rcode_mut() = RCODE::NameError,
    }
    if reply.answers.is_empty() {
        reply.name_servers.push(soa(zone));
    }
    reply
}

/// The question's name lower-cased when it is the apex or below it; `None` outside the
/// domain (REFUSED: we are not a resolver). Names are compared label by label, so a
/// label holding a '.' byte cannot pass for two.
fn owner_in_zone(question: &Question, zone: &DnsZone) -> Option<String> {
    let labels = question.qname.get_labels();
    let apex: Vec<&str> = zone.domain.split('.').collect();
    let below = labels.len().checked_sub(apex.len())?;
    let in_zone = labels[below..]
        .iter()
        .zip(&apex)
        .all(|(l, a)| l.as_ref().eq_ignore_ascii_case(a.as_bytes()));
    if !in_zone {
        return None;
    }
    let mut owner = String::new();
    for label in &labels[..below] {
        let bytes = label.as_ref();
        // No zone name holds other bytes: an owner that cannot match anything (NXDOMAIN).
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return Some(String::from("\0"));
        }
        owner.push_str(&String::from_utf8_lossy(bytes).to_ascii_lowercase());
        owner.push('.');
    }
    owner.push_str(&zone.domain);
    Some(owner)
}

/// The addresses at `owner`; an empty list for a name that exists only because names
/// below it do (an empty non-terminal such as `ns.<domain>`); `None`: no such name.
fn owner_records<'z>(owner: &str, zone: &'z DnsZone) -> Option<&'z [IpAddr]> {
    if let Some(addresses) = zone.names.get(owner) {
        return Some(addresses);
    }
    let suffix = format!(".{owner}");
    zone.names
        .keys()
        .any(|name| name.ends_with(&suffix))
        .then_some(&[][..])
}

fn wanted(qtype: QTYPE, ip: &IpAddr) -> bool {
    match qtype {
        QTYPE::ANY => true,
        QTYPE::TYPE(TYPE::A) => ip.is_ipv4(),
        QTYPE::TYPE(TYPE::AAAA) => ip.is_ipv6(),
        _ => false,
    }
}

fn apex<'a>(reply: &mut Packet<'a>, qtype: QTYPE, qname: Name<'a>, zone: &'a DnsZone) {
    let soa_wanted = matches!(qtype, QTYPE::ANY | QTYPE::TYPE(TYPE::SOA));
    let ns_wanted = matches!(qtype, QTYPE::ANY | QTYPE::TYPE(TYPE::NS));
    if soa_wanted {
        reply.answers.push(soa(zone));
    }
    if ns_wanted {
        // One NS per name server (each live node answering DNS), with its glue: the
        // resolver that follows the delegation needs the servers' addresses.
        for host in &zone.ns_hosts {
            reply.answers.push(ResourceRecord::new(
                qname.clone(),
                CLASS::IN,
                TTL,
                RData::NS(NS(Name::new_unchecked(host))),
            ));
            for ip in zone.names.get(host).into_iter().flatten() {
                reply
                    .additional_records
                    .push(address_record(Name::new_unchecked(host), *ip));
            }
        }
    }
    if reply.answers.is_empty() {
        reply.name_servers.push(soa(zone));
    }
}

fn soa(zone: &DnsZone) -> ResourceRecord<'_> {
    ResourceRecord::new(
        Name::new_unchecked(&zone.domain),
        CLASS::IN,
        TTL,
        RData::SOA(SOA {
            mname: Name::new_unchecked(&zone.ns_host),
            rname: Name::new_unchecked(&zone.hostmaster),
            serial: zone.serial,
            refresh: SOA_REFRESH,
            retry: SOA_RETRY,
            expire: SOA_EXPIRE,
            // The negative-caching TTL (RFC 2308): an unknown name is asked again
            // within a minute, as soon as a new load balancer may have it.
            minimum: TTL,
        }),
    )
}

fn address_record(name: Name<'_>, ip: IpAddr) -> ResourceRecord<'_> {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A::from(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA::from(v6)),
    };
    ResourceRecord::new(name, CLASS::IN, TTL, rdata)
}
