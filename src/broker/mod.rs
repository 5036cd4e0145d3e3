//! RabbitMQ: connecting (with bounded retries), declaring the topology, and publishing
//! with publisher confirms.

pub mod connect;
pub mod publisher;
pub mod topology;

pub use connect::connect;
pub use publisher::Publisher;
pub use topology::Topology;
