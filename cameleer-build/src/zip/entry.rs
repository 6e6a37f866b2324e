//! One entry's data: inflated (or copied) as it streams, with its real
//! sizes, CRC-32 and the limits checked on every chunk.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Decompress, FlushDecompress, Status};

use super::fast::FastInflate;
use super::input::Input;
use crate::{Limits, ValidationError};

/// The shared budget of uncompressed bytes across all archives of one upload.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Charges `n` bytes; false once the budget is exceeded.
    fn charge(&self, n: u64) -> bool {
        self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n) <= self.limit
    }
}

/// What an entry turned out to hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryOutcome {
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
}

enum Mode<'a> {
    Stored {
        remaining: u64,
    },
    Deflate {
        z: &'a mut Decompress,
        done: bool,
    },
    /// Inflated in one shot (see [`super::fast`]): the output, and how much
    /// of it was read.
    Inflated {
        out: &'a [u8],
        pos: usize,
    },
}

/// The data of the entry being walked. It implements [`Read`] for visitors
/// that look inside (manifests, class headers, nested JARs); whatever they
/// leave is drained by [`EntryData::finish`] through a faster path.
pub(crate) struct EntryData<'a, R> {
    input: &'a mut Input<R>,
    mode: Mode<'a>,
    scratch: &'a mut [u8],
    crc: crc32fast::Hasher,
    out: u64,
    consumed: u64,
    limits: &'a Limits,
    budget: &'a Budget,
    /// The entry's full path, for messages.
    name: &'a str,
}

impl<'a, R: Read> EntryData<'a, R> {
    /// STORED data of exactly `size` bytes.
    pub(crate) fn stored(
        input: &'a mut Input<R>,
        size: u64,
        scratch: &'a mut [u8],
        limits: &'a Limits,
        budget: &'a Budget,
        name: &'a str,
    ) -> Self {
        Self::with_mode(
            input,
            Mode::Stored { remaining: size },
            scratch,
            limits,
            budget,
            name,
        )
    }

    /// DEFLATE data, ended by the deflate stream itself. Inflated in one
    /// shot by `fast` when the local header gave the sizes (`Some((csize,
    /// usize))`) and it can be (see [`super::fast`]), else streamed by `z`
    /// (reset here).
    pub(crate) fn deflated(
        input: &'a mut Input<R>,
        z: &'a mut Decompress,
        fast: (&'a mut FastInflate, Option<(u64, u64)>),
        scratch: &'a mut [u8],
        limits: &'a Limits,
        budget: &'a Budget,
        name: &'a str,
    ) -> Result<Self, ValidationError> {
        let (fast, sizes) = fast;
        if let Some((csize, usize)) = sizes
            && let Some(out) = FastInflate::inflate(fast, input, csize, usize)?
        {
            // It fitted the buffer, so it fits a usize.
            input.consume(csize as usize);
            let crc = crc32fast::hash(out);
            let mut this = Self::with_mode(
                input,
                Mode::Inflated { out, pos: 0 },
                scratch,
                limits,
                budget,
                name,
            );
            this.crc = crc32fast::Hasher::new_with_initial_len(crc, usize);
            this.consumed = csize;
            this.account(out.len())?;
            return Ok(this);
        }
        z.reset(false);
        Ok(Self::with_mode(
            input,
            Mode::Deflate { z, done: false },
            scratch,
            limits,
            budget,
            name,
        ))
    }

    fn with_mode(
        input: &'a mut Input<R>,
        mode: Mode<'a>,
        scratch: &'a mut [u8],
        limits: &'a Limits,
        budget: &'a Budget,
        name: &'a str,
    ) -> Self {
        Self {
            input,
            mode,
            scratch,
            crc: crc32fast::Hasher::new(),
            out: 0,
            consumed: 0,
            limits,
            budget,
            name,
        }
    }

    fn truncated(&self) -> ValidationError {
        ValidationError::Truncated(format!(
            "input ends inside the data of entry {:?}",
            self.name
        ))
    }

    /// Counts `n` produced bytes against the budget and the ratio limit.
    fn account(&mut self, n: usize) -> Result<(), ValidationError> {
        self.out += n as u64;
        if !self.budget.charge(n as u64) {
            return Err(ValidationError::UncompressedBudgetExceeded {
                name: self.name.to_owned(),
                limit: self.limits.max_total_uncompressed,
            });
        }
        if self.out > self.limits.ratio_threshold_bytes
            && self.out
                > self
                    .consumed
                    .saturating_mul(self.limits.max_compression_ratio)
        {
            return Err(ValidationError::CompressionRatioExceeded {
                name: self.name.to_owned(),
                ratio: self.limits.max_compression_ratio,
            });
        }
        Ok(())
    }

    /// Produces up to `dst.len()` bytes into `dst`; 0 at the entry's end.
    fn produce(&mut self, dst: &mut [u8]) -> Result<usize, ValidationError> {
        if dst.is_empty() {
            return Ok(0);
        }
        if let Mode::Inflated { out, pos } = &mut self.mode {
            // Counted and checksummed when it was inflated.
            let n = dst.len().min(out.len() - *pos);
            dst[..n].copy_from_slice(&out[*pos..*pos + n]);
            *pos += n;
            return Ok(n);
        }
        loop {
            if self.input.available().is_empty() && !self.is_done() && self.input.fill()? == 0 {
                return Err(self.truncated());
            }
            let avail = self.input.available();
            let (used, produced, ended) = match &mut self.mode {
                Mode::Stored { remaining } => {
                    let n = (*remaining).min(avail.len() as u64).min(dst.len() as u64) as usize;
                    dst[..n].copy_from_slice(&avail[..n]);
                    *remaining -= n as u64;
                    (n, n, *remaining == 0)
                }
                Mode::Deflate { done: true, .. } | Mode::Inflated { .. } => return Ok(0),
                Mode::Deflate { z, done } => {
                    let (bi, bo) = (z.total_in(), z.total_out());
                    let status = z
                        .decompress(avail, dst, FlushDecompress::None)
                        .map_err(|e| {
                            ValidationError::Malformed(format!(
                                "corrupt deflate data in entry {:?}: {e}",
                                self.name
                            ))
                        })?;
                    *done = status == Status::StreamEnd;
                    (
                        (z.total_in() - bi) as usize,
                        (z.total_out() - bo) as usize,
                        *done,
                    )
                }
            };
            if let Mode::Stored { remaining: 0 } = self.mode
                && produced == 0
            {
                return Ok(0);
            }
            self.input.consume(used);
            self.consumed += used as u64;
            if produced > 0 {
                self.crc.update(&dst[..produced]);
                self.account(produced)?;
                return Ok(produced);
            }
            if ended {
                return Ok(0);
            }
            if used == 0 && self.input.fill()? == 0 {
                // The inflater wants more input than there is.
                return Err(self.truncated());
            }
        }
    }

    fn is_done(&self) -> bool {
        match &self.mode {
            Mode::Stored { remaining } => *remaining == 0,
            Mode::Deflate { done, .. } => *done,
            Mode::Inflated { .. } => true,
        }
    }

    /// Drains what the visitor left (STORED data is checksummed in place, no
    /// copy) and returns the real CRC-32 and sizes.
    pub(crate) fn finish(mut self) -> Result<EntryOutcome, ValidationError> {
        loop {
            match &mut self.mode {
                Mode::Stored { remaining } => {
                    if *remaining == 0 {
                        break;
                    }
                    if self.input.available().is_empty() && self.input.fill()? == 0 {
                        return Err(self.truncated());
                    }
                    let avail = self.input.available();
                    let n = (*remaining).min(avail.len() as u64) as usize;
                    self.crc.update(&avail[..n]);
                    *remaining -= n as u64;
                    self.input.consume(n);
                    self.consumed += n as u64;
                    self.account(n)?;
                }
                Mode::Inflated { .. } => break,
                Mode::Deflate { .. } => {
                    let scratch = std::mem::take(&mut self.scratch);
                    let r = self.produce(scratch);
                    self.scratch = scratch;
                    if r? == 0 {
                        break;
                    }
                }
            }
        }
        Ok(EntryOutcome {
            crc: self.crc.clone().finalize(),
            csize: self.consumed,
            usize: self.out,
        })
    }
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.produce(buf).map_err(ValidationError::into_io)
    }
}
