//! A repository on a local file system: segments, index/hints/integrity, transactions, locks.
