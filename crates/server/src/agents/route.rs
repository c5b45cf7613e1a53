//! Which perspectives validate an identifier: `[[validation.routes]]`.
