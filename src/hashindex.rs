//! borg's on-disk hash index (repository-format.md §3.4): NSIndex (repository index,
//! value = segment, offset) and ChunkIndex (cache, value = refcount, size, csize).
