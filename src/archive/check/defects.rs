//! What `--verify-data` does with the objects that failed to decrypt or authenticate.

use super::{log_debug, log_warning, Checker};
use crate::errors::{ErrorKind, Result};
use crate::repository::{ObjectId, MANIFEST_ID};

impl Checker {
    /// With `--repair`, each defect object is read once more (it may have been a transient
    /// read error) and deleted if it fails again; the rest of the check then treats it as
    /// missing (zero-chunk replacement, healed by a later backup). Without, they are listed
    /// at debug level.
    pub(super) fn handle_defect_chunks(&mut self, defects: &[ObjectId]) -> Result<()> {
        if defects.is_empty() {
            return Ok(());
        }
        if !self.repair() {
            log_warning(
                "Found defect chunks. With --repair, they would get deleted, so affected files \
                 could get repaired then and maybe healed later.",
            );
            for id in defects {
                log_debug(&format!("chunk {} is defect.", hex::encode(id)));
            }
            return Ok(());
        }
        log_warning(
            "Found defect chunks. They will be deleted now, so affected files can get repaired \
             now and maybe healed later.",
        );
        for id in defects {
            if self.fails_again(id)? {
                self.chunks.remove(id);
                self.repo.delete(id)?;
                log_debug(&format!("chunk {} deleted.", hex::encode(id)));
            } else {
                log_warning(&format!(
                    "chunk {} not deleted, did not consistently fail.",
                    hex::encode(id)
                ));
            }
        }
        Ok(())
    }

    /// Whether reading and decrypting `id` fails (a vanished object is an error, as in borg).
    fn fails_again(&self, id: &ObjectId) -> Result<bool> {
        let stored = match self.repo.get(id) {
            Ok(stored) => stored,
            Err(e) if e.is(ErrorKind::RepositoryObjectNotFound) => return Err(e),
            Err(_) => return Ok(true),
        };
        let id_to_check = (*id != MANIFEST_ID).then_some(id);
        Ok(self.key.decrypt(id_to_check, &stored).is_err())
    }
}
