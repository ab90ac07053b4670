//! The archive's item metadata stream: items packed back to back, cut with the items chunker
//! params into chunks that are stored like file data (borg's `ChunkBuffer`,
//! repository-format.md §7.3).

use crate::archive::item::Item;
use crate::chunker::{chunk_lengths, ChunkerParams, ITEMS_CHUNKER_PARAMS};
use crate::errors::Result;
use crate::msgpack;

/// Items are chunked whenever the buffer grows beyond this. borg uses 8 MiB; chunk boundaries
/// are content-defined, so a smaller buffer changes little but keeps the whole item stream of
/// a large backup from staying in memory.
pub const BUFFER_SIZE: usize = 2 * 1024 * 1024;

/// Collects packed items; `store` is called for every finished item-stream chunk and returns
/// its id.
pub struct ItemBuffer {
    buffer: Vec<u8>,
    seed: u32,
    params: ChunkerParams,
    /// Ids of the stored item-stream chunks, in order (the archive's `items`).
    pub chunks: Vec<[u8; 32]>,
}

impl ItemBuffer {
    pub fn new(chunk_seed: i32) -> ItemBuffer {
        ItemBuffer {
            buffer: Vec::with_capacity(1 << 20),
            seed: chunk_seed as u32,
            params: ITEMS_CHUNKER_PARAMS,
            chunks: Vec::new(),
        }
    }

    /// Append an item; when the buffer is full, store all chunks but the last.
    pub fn add(
        &mut self,
        item: &Item,
        store: &mut dyn FnMut(&[u8]) -> Result<[u8; 32]>,
    ) -> Result<()> {
        self.add_value(&item.to_value(), store)
    }

    /// Append an item given as its msgpack map (keys this crate does not model are kept).
    pub fn add_value(
        &mut self,
        item: &rmpv::Value,
        store: &mut dyn FnMut(&[u8]) -> Result<[u8; 32]>,
    ) -> Result<()> {
        msgpack::pack_into(&mut self.buffer, item);
        if self.buffer.len() > BUFFER_SIZE {
            self.flush(false, store)?;
        }
        Ok(())
    }

    /// Chunk the buffer; keep the last (partial) chunk unless `all` or it is the only one.
    pub fn flush(
        &mut self,
        all: bool,
        store: &mut dyn FnMut(&[u8]) -> Result<[u8; 32]>,
    ) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let lengths = chunk_lengths(&self.params, self.seed, &self.buffer);
        let keep_last = !all && lengths.len() > 1;
        let stored = if keep_last {
            lengths.len() - 1
        } else {
            lengths.len()
        };
        let mut offset = 0;
        for len in &lengths[..stored] {
            let id = store(&self.buffer[offset..offset + len])?;
            self.chunks.push(id);
            offset += len;
        }
        self.buffer.drain(..offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_streams_become_one_chunk_at_the_end() {
        let mut buf = ItemBuffer::new(0);
        let stored = std::cell::RefCell::new(Vec::<Vec<u8>>::new());
        let mut store = |d: &[u8]| -> Result<[u8; 32]> {
            stored.borrow_mut().push(d.to_vec());
            Ok([0; 32])
        };
        for i in 0..10 {
            let item = Item {
                path: format!("f{i}").into_bytes(),
                mtime: i,
                ..Default::default()
            };
            buf.add(&item, &mut store).unwrap();
        }
        assert!(stored.borrow().is_empty());
        buf.flush(true, &mut store).unwrap();
        let stored = stored.into_inner();
        assert_eq!(stored.len(), 1);
        let items = crate::archive::meta::decode_items(&stored.concat()).unwrap();
        assert_eq!(items.len(), 10);
    }

    #[test]
    fn big_streams_flush_all_but_the_last_chunk() {
        let mut buf = ItemBuffer::new(-2023406815);
        let stored = std::cell::RefCell::new(Vec::<Vec<u8>>::new());
        let mut store = |d: &[u8]| -> Result<[u8; 32]> {
            stored.borrow_mut().push(d.to_vec());
            Ok([0; 32])
        };
        let mut n = 0;
        while stored.borrow().is_empty() {
            let item = Item {
                path: format!("{n:0200}").into_bytes(),
                mtime: n,
                ..Default::default()
            };
            buf.add(&item, &mut store).unwrap();
            n += 1;
        }
        buf.flush(true, &mut store).unwrap();
        let stored = stored.into_inner();
        let items = crate::archive::meta::decode_items(&stored.concat()).unwrap();
        assert_eq!(items.len() as i64, n);
        assert!(stored.iter().all(|c| c.len() <= 512 * 1024));
    }
}
