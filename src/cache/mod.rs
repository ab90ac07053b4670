//! Client-side state: security dir checks, chunk index and cache dir.
