//! OrderFlow: the Tidings reference order pipeline — an HTTP API and inventory, payments,
//! shipping and notification services around an order saga, with a load generator that
//! drives it end to end through the real API and checks the invariants that must hold.

pub mod api;
pub mod chaos;
pub mod contracts;
pub mod db;
pub mod load;
pub mod opt;
pub mod pg;
pub mod report;
pub mod run;
pub mod scale;
pub mod services;
pub mod sql;
pub mod summary;
pub mod system;
pub mod work;

pub use opt::Opts;
pub use run::run;
