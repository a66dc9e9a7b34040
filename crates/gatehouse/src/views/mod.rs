//! What the pages are made of: the templates (parsed once at startup) and the embedded static
//! assets. Below the transports and the shared state, so both can hold and use them.

pub mod assets;
pub mod templates;

pub use assets::Assets;
pub use templates::Templates;
