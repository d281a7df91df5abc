//! The index stage: the single writer of the store index. It records each package's file list
//! once all of its files are in the CAS, committing in batches.

use std::time::{Duration, Instant};

use flowpm_pipeline::{Receiver, StageContext};
use flowpm_store::{Index, IndexBatch};

use crate::InstallError;
use crate::capacity::{INDEX_BATCH, INDEX_BATCH_MILLIS};
use crate::messages::StoredPackage;

pub fn run_index_writer(
    context: &StageContext,
    input: &Receiver<StoredPackage>,
    index: &Index,
) -> Result<(), InstallError> {
    let mut batch = IndexBatch::default();
    let mut last_commit = Instant::now();
    let interval = Duration::from_millis(INDEX_BATCH_MILLIS);
    while let Some(stored) = context.recv(input) {
        context.record_item(0);
        // A directory's files are read again by every install: an entry would only go stale.
        if stored.unit.directory.is_some() {
            continue;
        }
        batch.push(&stored.unit.key, &stored.files);
        if batch.len() >= INDEX_BATCH || last_commit.elapsed() >= interval {
            index.commit(&batch)?;
            batch.clear();
            last_commit = Instant::now();
        }
    }
    // The input closes both at the end of a good run and when the run fails; committing here is
    // right either way, since every entry received describes files already in the CAS.
    index.commit(&batch)?;
    Ok(())
}
