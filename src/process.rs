//! Process managers: consumers of the event log that issue commands. The order saga moves
//! each order through inventory and payment, and compensates when a step fails.

pub mod gateway;
pub mod order_saga;
