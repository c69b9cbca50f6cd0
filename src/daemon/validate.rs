//! Every request checked again on arrival. The socket is an API: a client other than pm3's CLI
//! (or a CLI of another version) may send anything the protocol can carry, so the daemon applies
//! the rules of [`crate::spec`] itself before it changes or allocates anything: names that
//! become file names, instance counts, sizes, NUL bytes, absolute paths.

use std::rc::Rc;

use crate::protocol::{ConfigPayload, ErrorKind, ErrorReply, Request};
use crate::spec::{MAX_FILE_INSTANCES, MAX_INSTANCES, show};

use super::Daemon;

/// `Ok(())` when `req` may be carried out; otherwise why not, in one sentence.
pub fn request(d: &Rc<Daemon>, req: &Request) -> Result<(), ErrorReply> {
    match req {
        Request::Start { config: Some(c), .. }
        | Request::Restart { config: Some(c), .. }
        | Request::Reload { config: Some(c), .. } => payload(c),
        Request::Scale { process, count } => scale(d, process, *count),
        _ => Ok(()),
    }
}

fn bad(message: String) -> ErrorReply {
    ErrorReply::new(ErrorKind::BadRequest, format!("invalid request: {message}"))
}

/// A config as the CLI would send it: every definition valid, and a starting environment the
/// kernel can pass on.
fn payload(c: &ConfigPayload) -> Result<(), ErrorReply> {
    c.file.validate().map_err(bad)?;
    for (k, v) in &c.env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(bad(format!("environment variable `{}` has an invalid name or value", show(k))));
        }
    }
    Ok(())
}

/// `scale`: between 1 and [`MAX_INSTANCES`], and the file's total within [`MAX_FILE_INSTANCES`].
/// Zero has its own answer in `ops::scale` (use `stop`).
pub fn scale(d: &Rc<Daemon>, process: &str, count: u32) -> Result<(), ErrorReply> {
    if count > MAX_INSTANCES {
        return Err(bad(format!(
            "cannot scale `{}` to {count} instances: the maximum is {MAX_INSTANCES}",
            show(process)
        )));
    }
    let table = d.table.borrow();
    let Some(config) = table.config_of(process) else { return Ok(()) };
    let mut counts: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for e in table.entries.values().filter(|e| *e.inst.config == *config) {
        counts.insert(&e.inst.def.name, e.inst.def.instances);
    }
    counts.insert(process, count);
    let total: u64 = counts.values().map(|&n| u64::from(n)).sum();
    if total > u64::from(MAX_FILE_INSTANCES) {
        return Err(bad(format!(
            "cannot scale `{}` to {count} instances: {} would then have {total} instances in all, more than {MAX_FILE_INSTANCES}",
            show(process),
            config.display()
        )));
    }
    Ok(())
}
