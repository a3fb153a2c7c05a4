//! Process managers: consumers of the event log that issue commands. The order saga moves
//! each order through inventory and payment, and compensates when a step fails; the
//! orders it cannot advance wait in its dead letters, retrying or parked.

pub mod dead_letters;
pub mod gateway;
pub mod order_saga;
