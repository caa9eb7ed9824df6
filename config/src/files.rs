//! `[files]`: how bucket-to-bucket migrations copy and rewrite.

use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Files {
    /// Objects copied at once by one migration.
    pub transfers: usize,
    /// Objects larger than this (MiB) are copied as multipart uploads; smaller ones in one
    /// PUT streamed from the source (S3 takes at most 5 GiB in one PUT).
    pub multipart_threshold_mib: usize,
    /// Size of one multipart part (MiB; S3 wants at least 5). A transfer holds two parts (one
    /// uploading, the next being read), so memory is about `transfers` x two parts.
    pub part_size_mib: usize,
    /// Rows per chunk of a URL rewrite.
    pub rewrite_chunk: usize,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            transfers: 4,
            multipart_threshold_mib: 200,
            part_size_mib: 5,
            rewrite_chunk: 1000,
        }
    }
}

impl Files {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        crate::positive("files.transfers", self.transfers)?;
        crate::positive("files.rewrite_chunk", self.rewrite_chunk)?;
        if self.part_size_mib < 5 {
            return Err(ConfigError::new(
                "files.part_size_mib",
                format!("is {}; S3 refuses parts under 5 MiB", self.part_size_mib),
                "use 5 or more",
            ));
        }
        crate::positive(
            "files.multipart_threshold_mib",
            self.multipart_threshold_mib,
        )?;
        if self.multipart_threshold_mib > 5 * 1024 {
            return Err(ConfigError::new(
                "files.multipart_threshold_mib",
                format!(
                    "is {}; S3 takes at most 5 GiB in one PUT",
                    self.multipart_threshold_mib
                ),
                "use 5120 or less",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Env};

    #[test]
    fn parts_under_five_mib_are_refused() {
        let e = Config::from_toml_str("[files]\npart_size_mib = 4\n", &Env::empty())
            .err()
            .unwrap();
        assert_eq!(e.key, "files.part_size_mib");
        let c = Config::from_toml_str("[files]\ntransfers = 16\n", &Env::empty()).unwrap();
        assert_eq!((c.files.transfers, c.files.part_size_mib), (16, 5));
    }
}
