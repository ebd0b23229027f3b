//! The engine through the `JobStore` seam, with the embedded store keeping
//! the bytes.
