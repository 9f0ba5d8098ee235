//! The client against the Higher Logic simulator, over real HTTP.
//!
//! TODO(port to the v2 simulator): the simulator (`hlsync-sim`) is being rewritten to speak the
//! Push API v2; until it does, this suite holds no tests. The wire format and the answers are
//! pinned by `fixed_answers.rs`.
