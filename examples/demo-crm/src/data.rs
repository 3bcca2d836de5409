//! The CRM's records, in memory, partitioned by tenant.
//!
//! Tenant isolation lives in the shape of this API rather than in each handler: every read and
//! write takes the caller's tenant (from the verified token, never from the request) and can
//! only reach that tenant's book. Record ids are unique across tenants, so asking for another
//! tenant's id finds nothing instead of a different row.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most records one tenant may hold of each kind: the demo stays bounded under abuse.
pub const MAX_RECORDS_PER_TENANT: usize = 10_000;
/// Longest accepted text field, in characters.
const MAX_FIELD_CHARS: usize = 200;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub email: String,
    pub company: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub company: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ticket {
    pub id: String,
    pub subject: String,
    pub status: String,
    /// The subject (user or service) whose token opened it.
    pub opened_by: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub subject: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub amount_cents: u64,
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Billing {
    pub plan: String,
    pub balance_cents: u64,
    pub invoices: Vec<Invoice>,
}

/// Why a write was refused; rendered as a 400 or an MCP `invalid_params`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrmError {
    #[error("{field} must be between 1 and {MAX_FIELD_CHARS} characters")]
    FieldLength { field: &'static str },
    #[error("email must look like name@domain")]
    Email,
    #[error("this tenant already holds the maximum of {MAX_RECORDS_PER_TENANT} records")]
    Full,
}

/// One tenant's records.
#[derive(Debug, Default)]
struct Book {
    contacts: Vec<Contact>,
    tickets: Vec<Ticket>,
    billing: Billing,
}

/// All tenants' books.
#[derive(Debug, Default)]
pub struct Crm {
    books: RwLock<HashMap<String, Book>>,
    next_id: AtomicU64,
}

impl Crm {
    /// The demo data for the tenants of `examples/demo.toml`: acme and globex.
    pub fn seeded() -> Self {
        let crm = Self::default();
        crm.seed(
            "acme",
            &[
                ("Ada Lovelace", "ada@acme.example", "Analytical Engines"),
                ("Grace Hopper", "grace@acme.example", "Compilers Inc"),
            ],
            &["Printer on fire", "Renewal quote for 2027"],
            Billing {
                plan: "Business".into(),
                balance_cents: 12_500,
                invoices: vec![Invoice {
                    id: "inv-acme-1".into(),
                    amount_cents: 99_000,
                    status: "paid".into(),
                }],
            },
        );
        crm.seed(
            "globex",
            &[("Hank Scorpio", "hank@globex.example", "Globex")],
            &["Doomsday device warranty"],
            Billing {
                plan: "Enterprise".into(),
                balance_cents: 0,
                invoices: vec![Invoice {
                    id: "inv-globex-1".into(),
                    amount_cents: 2_500_000,
                    status: "due".into(),
                }],
            },
        );
        crm
    }

    fn seed(
        &self,
        tenant: &str,
        contacts: &[(&str, &str, &str)],
        tickets: &[&str],
        billing: Billing,
    ) {
        let mut books = self.write();
        let book = books.entry(tenant.to_owned()).or_default();
        for (name, email, company) in contacts {
            let id = self.id("c");
            book.contacts.push(Contact {
                id,
                name: (*name).into(),
                email: (*email).into(),
                company: (*company).into(),
            });
        }
        for subject in tickets {
            let id = self.id("t");
            book.tickets.push(Ticket {
                id,
                subject: (*subject).into(),
                status: "open".into(),
                opened_by: "seed".into(),
            });
        }
        book.billing = billing;
    }

    pub fn contacts(&self, tenant: &str) -> Vec<Contact> {
        self.read(tenant, |b| b.contacts.clone())
    }

    /// One contact of `tenant`; another tenant's id is simply not found.
    pub fn contact(&self, tenant: &str, id: &str) -> Option<Contact> {
        self.read(tenant, |b| b.contacts.iter().find(|c| c.id == id).cloned())
    }

    pub fn add_contact(&self, tenant: &str, new: NewContact) -> Result<Contact, CrmError> {
        let name = field("name", new.name)?;
        let email = field("email", new.email)?;
        let company = if new.company.is_empty() {
            String::new()
        } else {
            field("company", new.company)?
        };
        if !looks_like_email(&email) {
            return Err(CrmError::Email);
        }
        let mut books = self.write();
        let book = books.entry(tenant.to_owned()).or_default();
        if book.contacts.len() >= MAX_RECORDS_PER_TENANT {
            return Err(CrmError::Full);
        }
        let contact = Contact {
            id: self.id("c"),
            name,
            email,
            company,
        };
        book.contacts.push(contact.clone());
        Ok(contact)
    }

    pub fn tickets(&self, tenant: &str) -> Vec<Ticket> {
        self.read(tenant, |b| b.tickets.clone())
    }

    pub fn open_ticket(
        &self,
        tenant: &str,
        opened_by: &str,
        new: NewTicket,
    ) -> Result<Ticket, CrmError> {
        let subject = field("subject", new.subject)?;
        let mut books = self.write();
        let book = books.entry(tenant.to_owned()).or_default();
        if book.tickets.len() >= MAX_RECORDS_PER_TENANT {
            return Err(CrmError::Full);
        }
        let ticket = Ticket {
            id: self.id("t"),
            subject,
            status: "open".into(),
            opened_by: opened_by.to_owned(),
        };
        book.tickets.push(ticket.clone());
        Ok(ticket)
    }

    pub fn billing(&self, tenant: &str) -> Billing {
        self.read(tenant, |b| b.billing.clone())
    }

    fn read<T: Default>(&self, tenant: &str, f: impl FnOnce(&Book) -> T) -> T {
        let books = self
            .books
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        books.get(tenant).map(f).unwrap_or_default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Book>> {
        self.books
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn id(&self, prefix: &str) -> String {
        format!(
            "{prefix}_{}",
            self.next_id.fetch_add(1, Ordering::Relaxed) + 1
        )
    }
}

fn field(name: &'static str, value: String) -> Result<String, CrmError> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_FIELD_CHARS || trimmed.chars().any(char::is_control) {
        return Err(CrmError::FieldLength { field: name });
    }
    Ok(trimmed.to_owned())
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_never_see_each_others_rows() {
        let crm = Crm::seeded();
        let acme_ids: Vec<String> = crm.contacts("acme").into_iter().map(|c| c.id).collect();
        assert_eq!(acme_ids.len(), 2);
        for id in &acme_ids {
            assert!(crm.contact("globex", id).is_none());
            assert!(crm.contact("acme", id).is_some());
        }
        assert!(crm.contacts("unknown").is_empty());
        assert_eq!(crm.billing("unknown"), Billing::default());
    }

    #[test]
    fn writes_land_in_the_callers_tenant_only() {
        let crm = Crm::seeded();
        let new = NewContact {
            name: "Eve".into(),
            email: "eve@globex.example".into(),
            company: String::new(),
        };
        let c = crm.add_contact("globex", new).unwrap();
        assert!(crm.contact("acme", &c.id).is_none());
        assert_eq!(crm.contacts("globex").len(), 2);
        assert_eq!(crm.contacts("acme").len(), 2);
    }

    #[test]
    fn bad_fields_are_refused() {
        let crm = Crm::default();
        let long = "x".repeat(MAX_FIELD_CHARS + 1);
        for (name, email, want) in [
            ("", "a@b.c", CrmError::FieldLength { field: "name" }),
            (
                long.as_str(),
                "a@b.c",
                CrmError::FieldLength { field: "name" },
            ),
            ("A\u{0}B", "a@b.c", CrmError::FieldLength { field: "name" }),
            ("Ann", "not-an-email", CrmError::Email),
            ("Ann", "a@b@c.d", CrmError::Email),
        ] {
            let new = NewContact {
                name: name.into(),
                email: email.into(),
                company: String::new(),
            };
            assert_eq!(crm.add_contact("acme", new), Err(want));
        }
        assert!(crm.contacts("acme").is_empty());
    }
}
