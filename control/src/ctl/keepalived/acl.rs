//! DPVS keepalived's access lists: `deny_address_group NAME { ... }` (the
//! blacklist) and `allow_address_group NAME { ... }` (the whitelist) at the
//! top level, which a virtual_server names with `daddr_group_name` and
//! `waddr_group_name` (DPVS's check_parser.c, check_data.c).
//!
//! Entries as DPVS reads them: `IP` and `IP-RANGE` (`10.0.0.1-20`, the last
//! part; every address of it becomes a host entry); also `ADDR/LEN`, one
//! prefix entry (DPVS has no prefixes but ipsets). `ipset:NAME` is refused.
//! What the groups become is `map`'s: one `AddAclEntry` per entry and
//! service.

use std::collections::HashMap;
use std::net::IpAddr;

use super::parse::{Error, Loc, Stmt};
use super::value::{err, need_block, no_block, range, MAX_TARGETS};
use crate::addr::{fmt_acl_entry, parse_acl_entry};
use crate::store::AclList;

/// An entry with the line it was written on: (address, prefix length).
pub(super) type Entry = (Loc, IpAddr, u8);

/// The access-list groups of a file, by list and name.
#[derive(Default)]
pub(super) struct AclGroups(HashMap<(AclList, String), Vec<Entry>>);

/// The list a top-level group keyword defines, if it is one.
pub(super) fn group_list(keyword: &str) -> Option<AclList> {
    match keyword {
        "deny_address_group" => Some(AclList::Blacklist),
        "allow_address_group" => Some(AclList::Whitelist),
        _ => None,
    }
}

/// The list a virtual_server keyword names a group of, if it is one.
pub(super) fn vs_list(keyword: &str) -> Option<AclList> {
    match keyword {
        "daddr_group_name" => Some(AclList::Blacklist),
        "waddr_group_name" => Some(AclList::Whitelist),
        _ => None,
    }
}

fn group_keyword(list: AclList) -> &'static str {
    match list {
        AclList::Blacklist => "deny_address_group",
        AclList::Whitelist => "allow_address_group",
    }
}

impl AclGroups {
    /// Reads `deny_address_group NAME { ... }` or `allow_address_group ...`.
    pub(super) fn read(&mut self, list: AclList, s: &Stmt) -> Result<(), Error> {
        let kw = s.keyword();
        let [name] = s.args() else {
            return err(&s.loc, format!("{kw} takes one name"));
        };
        let mut entries: Vec<Entry> = Vec::new();
        for e in need_block(s)? {
            no_block(e)?;
            let [v] = e.words.as_slice() else {
                return err(&e.loc, format!("a {kw} entry is IP, IP-RANGE or ADDR/LEN"));
            };
            if v.starts_with("ipset:") {
                return err(
                    &e.loc,
                    format!("{v}: ipset entries are not supported (list addresses or prefixes)"),
                );
            }
            if v.contains('/') {
                let (a, len) = parse_acl_entry(v).map_err(|m| Error::at(&e.loc, m))?;
                entries.push((e.loc.clone(), a, len));
            } else {
                for a in range(&e.loc, v)? {
                    entries.push((e.loc.clone(), a, if a.is_ipv4() { 32 } else { 128 }));
                }
            }
            if entries.len() > MAX_TARGETS {
                return err(
                    &e.loc,
                    format!("{kw} {name}: more than {MAX_TARGETS} entries"),
                );
            }
        }
        if self.0.insert((list, name.clone()), entries).is_some() {
            return err(&s.loc, format!("{kw} {name} defined twice"));
        }
        Ok(())
    }

    /// The entries of the group `name` a virtual server with VIP `vip` names
    /// at `loc`, as dpvsctl spells them (an empty group: none).
    pub(super) fn entries(
        &self,
        list: AclList,
        loc: &Loc,
        name: &str,
        vip: &IpAddr,
    ) -> Result<Vec<(Loc, String)>, Error> {
        let kw = group_keyword(list);
        let group = self
            .0
            .get(&(list, name.to_string()))
            .ok_or_else(|| Error::at(loc, format!("no {kw} {name}")))?;
        let mut seen = std::collections::HashSet::new();
        group
            .iter()
            // `10.0.0.1` and `10.0.0.1-2` in one group: one entry.
            .filter(|(_, a, len)| seen.insert((*a, *len)))
            .map(|(at, a, len)| {
                if a.is_ipv4() != vip.is_ipv4() {
                    return err(
                        at,
                        format!(
                            "{kw} {name}: {} is not of the family of the virtual server's {vip}",
                            fmt_acl_entry(a, *len)
                        ),
                    );
                }
                Ok((at.clone(), fmt_acl_entry(a, *len)))
            })
            .collect()
    }
}
