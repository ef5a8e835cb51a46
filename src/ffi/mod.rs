//! C ABI (see issue 3).
