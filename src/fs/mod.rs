//! File system metadata: capture for create, apply for extract (xattrs, ACLs, owners, times, special files).
