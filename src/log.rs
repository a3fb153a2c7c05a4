//! The event log as its readers see it: the registry of aggregates (each one's stream
//! type and event types, declared once), the codec and its upcasters (a stored event and
//! back), the safe horizon and the committed head (how far it can be read), the one
//! paged reader of a span of positions, and the horizon and recent events one process's
//! readers share (`shared`). The relay, the saga, the event feed, rebuild and
//! verify, the projection status and the audit trail all read the log through here; the
//! write side appends through `write::event_store`. The golden fixtures, one stream per
//! aggregate, are read by the tests through `golden`.

pub mod aggregates;
pub mod codec;
#[cfg(test)]
pub mod golden;
pub mod horizon;
pub mod reader;
pub mod shared;
pub mod source;
pub mod upcast;
