//! Keys, encryption, authentication (repository-format.md §4).
