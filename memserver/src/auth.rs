//! Who may connect: an allowlist of client addresses and/or a shared secret.

use crate::proto::{secret_eq, Request, Status, SECRET_LEN};
use std::net::Ipv4Addr;

#[derive(Default)]
pub struct Policy {
    pub allow: Vec<Ipv4Addr>,
    pub secret: Option<[u8; SECRET_LEN]>,
}

/// Never prints the secret.
impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("allow", &self.allow)
            .field("secret", &self.secret.map(|_| "<hidden>"))
            .finish()
    }
}

impl Policy {
    /// A server with neither would serve anyone: refuse to start.
    pub fn validate(&self) -> Result<(), String> {
        if self.allow.is_empty() && self.secret.is_none() {
            return Err(
                "refusing to serve anyone who asks: give a secret (--secret-file or \
             $MEMSERVER_SECRET) and/or --allow"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn check(&self, from: Option<Ipv4Addr>, req: &Request) -> Result<(), Status> {
        if !self.allow.is_empty() && !from.is_some_and(|a| self.allow.contains(&a)) {
            return Err(Status::NotAllowed);
        }
        if let Some(s) = &self.secret {
            if !secret_eq(s, &req.secret) {
                return Err(Status::BadSecret);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(secret: u8) -> Request {
        Request {
            queue: 0,
            node_id: 1,
            want_mib: 1,
            secret: [secret; 16],
            token: crate::proto::NO_TOKEN,
            release: false,
        }
    }
    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);

    #[test]
    fn an_open_policy_is_refused() {
        assert!(Policy::default().validate().is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = Policy {
            allow: vec![A],
            secret: Some([0xab; 16]),
        };
        let d = format!("{p:?}");
        assert!(d.contains("<hidden>") && !d.contains("171"), "{d}");
    }

    #[test]
    fn allowlist_and_secret_are_both_enforced() {
        let p = Policy {
            allow: vec![A],
            secret: Some([5; 16]),
        };
        assert!(p.validate().is_ok());
        assert_eq!(p.check(Some(A), &req(5)), Ok(()));
        assert_eq!(p.check(Some(B), &req(5)), Err(Status::NotAllowed));
        assert_eq!(p.check(None, &req(5)), Err(Status::NotAllowed));
        assert_eq!(p.check(Some(A), &req(6)), Err(Status::BadSecret));
    }

    #[test]
    fn secret_only_admits_any_address() {
        let p = Policy {
            allow: vec![],
            secret: Some([5; 16]),
        };
        assert_eq!(p.check(Some(B), &req(5)), Ok(()));
        assert_eq!(p.check(Some(B), &req(4)), Err(Status::BadSecret));
    }
}
