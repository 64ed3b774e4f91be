//! The group permissions of a connection: what its roles give it (PROTOCOL.md §8), and the
//! grants and revocations of the REST API on top.
//!
//! Roles, from a token (or a connect handler's answer; [`Grants::from_roles`] is the one
//! place that reads them):
//! - `webpubsub.joinLeaveGroup`, `webpubsub.sendToGroup`: every group;
//! - `webpubsub.joinLeaveGroup.<group>`, `webpubsub.sendToGroup.<group>`: that group;
//! - `webpubsub.joinLeaveGroups.<pattern>`, `webpubsub.sendToGroups.<pattern>`: the groups
//!   the pattern matches ([`patterns`](crate::patterns)); an invalid pattern is skipped (and
//!   logged), as the service skips it.
//!
//! Per permission, a connection has a rule set — every group, some patterns — and exceptions
//! for single groups, which win over the rules: a grant for one group is an allowing
//! exception, a revocation for one group a denying one (so a group that a pattern allows can
//! still be revoked alone). A grant or revocation for every group drops the exceptions.

use crate::patterns::Pattern;
use crate::types::Permission;
use std::collections::HashMap;

/// The prefix of the pattern roles of a permission (`webpubsub.joinLeaveGroups.`).
fn pattern_prefix(perm: Permission) -> &'static str {
    match perm {
        Permission::SendToGroup => "webpubsub.sendToGroups.",
        Permission::JoinLeaveGroup => "webpubsub.joinLeaveGroups.",
    }
}

/// Which groups one permission covers.
#[derive(Debug, Default, Clone)]
struct Rights {
    all: bool,
    patterns: Vec<Pattern>,
    /// Single groups allowed (`true`) or denied (`false`) whatever the rules say.
    exceptions: HashMap<String, bool>,
}

impl Rights {
    fn by_rules(&self, group: &str) -> bool {
        self.all || self.patterns.iter().any(|p| p.matches(group))
    }

    fn allows(&self, group: &str) -> bool {
        match self.exceptions.get(group) {
            Some(allowed) => *allowed,
            None => self.by_rules(group),
        }
    }

    fn allows_all(&self) -> bool {
        self.all && self.exceptions.values().all(|allowed| *allowed)
    }

    fn set(&mut self, group: &str, allowed: bool) {
        if self.by_rules(group) == allowed {
            self.exceptions.remove(group);
        } else {
            self.exceptions.insert(group.to_owned(), allowed);
        }
    }

    fn add_pattern(&mut self, pattern: Pattern) {
        if pattern.matches_everything() {
            self.all = true;
            self.exceptions.clear();
        } else if let Some(group) = pattern.literal() {
            self.set(&group, true);
        } else {
            // The newest rule wins over older exceptions of the groups it covers.
            self.exceptions.retain(|g, _| !pattern.matches(g));
            self.patterns.push(pattern);
        }
    }
}

/// The group permissions of a connection.
#[derive(Debug, Default, Clone)]
pub(crate) struct Grants {
    join_leave: Rights,
    send: Rights,
}

impl Grants {
    /// The permissions that `roles` give; roles that are not group permissions are ignored.
    pub fn from_roles<S: AsRef<str>>(roles: &[S]) -> Grants {
        let mut grants = Grants::default();
        for role in roles {
            let role = role.as_ref();
            for perm in [Permission::JoinLeaveGroup, Permission::SendToGroup] {
                grants.add_role(perm, role);
            }
        }
        grants
    }

    fn add_role(&mut self, perm: Permission, role: &str) {
        if let Some(pattern) = role.strip_prefix(pattern_prefix(perm)) {
            match Pattern::parse(pattern) {
                Ok(p) => self.rights_mut(perm).add_pattern(p),
                Err(e) => log::warn!("emulator: skipping the role `{role}`: {e}"),
            }
        } else if role == perm.role() {
            self.grant(perm, None);
        } else if let Some(group) = role
            .strip_prefix(perm.role())
            .and_then(|rest| rest.strip_prefix('.'))
        {
            if webpubsub_protocol::check_group_name(group).is_ok() {
                self.grant(perm, Some(group));
            }
        }
    }

    fn rights(&self, perm: Permission) -> &Rights {
        match perm {
            Permission::JoinLeaveGroup => &self.join_leave,
            Permission::SendToGroup => &self.send,
        }
    }

    fn rights_mut(&mut self, perm: Permission) -> &mut Rights {
        match perm {
            Permission::JoinLeaveGroup => &mut self.join_leave,
            Permission::SendToGroup => &mut self.send,
        }
    }

    /// Whether `perm` is allowed on `group`; `None` asks whether it is allowed on every group.
    pub fn allows(&self, perm: Permission, group: Option<&str>) -> bool {
        let r = self.rights(perm);
        match group {
            Some(g) => r.allows(g),
            None => r.allows_all(),
        }
    }

    /// Allows `perm` on one group, or on every group (`None`: exceptions are dropped).
    pub fn grant(&mut self, perm: Permission, group: Option<&str>) {
        let r = self.rights_mut(perm);
        match group {
            Some(g) => r.set(g, true),
            None => {
                r.all = true;
                r.exceptions.clear();
            }
        }
    }

    /// Denies `perm` on one group (even one a pattern or the every-group right covers), or
    /// takes it away entirely (`None`).
    pub fn revoke(&mut self, perm: Permission, group: Option<&str>) {
        let r = self.rights_mut(perm);
        match group {
            Some(g) => r.set(g, false),
            None => *r = Rights::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOIN: Permission = Permission::JoinLeaveGroup;
    const SEND: Permission = Permission::SendToGroup;

    #[test]
    fn roles_give_every_group_one_group_or_a_pattern() {
        let g = Grants::from_roles(&[
            "webpubsub.joinLeaveGroup",
            "webpubsub.sendToGroup.lobby",
            "webpubsub.sendToGroups.room.*",
            "webpubsub.sendToGroupsX",
            "webpubsub.sendToGroupX.y",
            "webpubsub.sendToGroup.",
            "unrelated",
        ]);
        assert!(g.allows(JOIN, Some("anything")));
        assert!(g.allows(JOIN, None));
        assert!(g.allows(SEND, Some("lobby")));
        assert!(g.allows(SEND, Some("room.1")));
        assert!(!g.allows(SEND, Some("room.1.2")));
        assert!(!g.allows(SEND, Some("Room.1")), "case-sensitive");
        assert!(!g.allows(SEND, Some("other")));
        assert!(!g.allows(SEND, None));
    }

    #[test]
    fn the_plural_pattern_roles_cover_their_own_permission_only() {
        let g = Grants::from_roles(&["webpubsub.joinLeaveGroups.chat.**"]);
        assert!(g.allows(JOIN, Some("chat.eu.west")));
        assert!(!g.allows(SEND, Some("chat.eu.west")));
        let all = Grants::from_roles(&["webpubsub.sendToGroups.**"]);
        assert!(all.allows(SEND, None));
        let literal = Grants::from_roles(&[r"webpubsub.sendToGroups.a\*"]);
        assert!(literal.allows(SEND, Some("a*")));
        assert!(!literal.allows(SEND, Some("ab")));
    }

    #[test]
    fn an_invalid_pattern_role_gives_nothing() {
        let g = Grants::from_roles(&[
            "webpubsub.sendToGroups.",
            r"webpubsub.sendToGroups.a\b",
            "webpubsub.sendToGroups.*a*b*c*d*e*",
        ]);
        assert!(!g.allows(SEND, Some("a")));
        assert!(!g.allows(SEND, Some("ab")));
        assert!(!g.allows(SEND, Some("xaxbxcxdxex")));
    }

    #[test]
    fn revoking_one_group_denies_it_even_under_a_pattern_or_every_group() {
        let mut g = Grants::from_roles(&["webpubsub.sendToGroups.room.*"]);
        g.revoke(SEND, Some("room.2"));
        assert!(!g.allows(SEND, Some("room.2")));
        assert!(g.allows(SEND, Some("room.3")));
        g.grant(SEND, Some("room.2"));
        assert!(g.allows(SEND, Some("room.2")));

        g.grant(SEND, None);
        g.revoke(SEND, Some("secret"));
        assert!(!g.allows(SEND, Some("secret")));
        assert!(g.allows(SEND, Some("public")));
        assert!(!g.allows(SEND, None), "one group is denied");
        g.grant(SEND, None);
        assert!(
            g.allows(SEND, Some("secret")),
            "every group drops exceptions"
        );
    }

    #[test]
    fn revoking_every_group_takes_patterns_and_single_grants_away() {
        let mut g = Grants::from_roles(&[
            "webpubsub.joinLeaveGroups.room.*",
            "webpubsub.joinLeaveGroup.lobby",
        ]);
        g.revoke(JOIN, None);
        assert!(!g.allows(JOIN, Some("room.1")));
        assert!(!g.allows(JOIN, Some("lobby")));
        g.grant(JOIN, Some("lobby"));
        assert!(g.allows(JOIN, Some("lobby")));
        g.revoke(JOIN, Some("lobby"));
        assert!(!g.allows(JOIN, Some("lobby")));
    }

    #[test]
    fn a_pattern_added_after_a_single_grant_keeps_the_denials_outside_it() {
        let mut g = Grants::default();
        g.grant(SEND, Some("room.1"));
        g.revoke(SEND, Some("lobby"));
        g.rights_mut(SEND)
            .add_pattern(Pattern::parse("room.*").unwrap());
        assert!(g.allows(SEND, Some("room.1")));
        assert!(g.allows(SEND, Some("room.9")));
        assert!(!g.allows(SEND, Some("lobby")));
        assert!(
            g.rights(SEND).exceptions.is_empty(),
            "nothing left to remember"
        );
    }
}
