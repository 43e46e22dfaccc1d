//! Detection of an MPI launcher (`mpirun`, `mpiexec`, `srun --mpi=...`) from environment variables.
//!
//! Everything here is a pure function of a variable lookup, so that it can be tested without
//! touching the process environment.

/// The variables whose presence means "started by an MPI launcher", in the order they are read.
///
/// * `OMPI_COMM_WORLD_SIZE`: Open MPI's `mpirun`/`mpiexec`; gives the world size.
/// * `PMI_SIZE`: MPICH (Hydra), Intel MPI, Slurm PMI-2; gives the world size.
/// * `PMIX_RANK`: PMIx launchers (Open MPI, `srun --mpi=pmix`); gives only the rank.
/// * `MPI_LOCALNRANKS`: MPICH (Hydra); gives only the number of ranks on this node.
pub const LAUNCHER_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
];

/// The variables that carry the world size, in the order they are read.
const SIZE_VARS: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// How this process was started, as told by the launcher's environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// No launcher variable is set: a plain process, world size 1.
    Standalone,
    /// Started by an MPI launcher.
    Mpi {
        /// The first variable of [`LAUNCHER_VARS`] that is set.
        var: &'static str,
        /// The world size, when a launcher variable gives it (a positive integer); `None` when
        /// only a rank or a local count is known (e.g. PMIx launchers set no size variable).
        world_size: Option<usize>,
    },
}

impl Launch {
    /// Reads the process environment (see [`LAUNCHER_VARS`]).
    pub fn detect() -> Launch {
        Launch::detect_with(|name| std::env::var(name).ok())
    }

    /// Like [`Launch::detect`], with `lookup(name)` in place of the environment.
    pub fn detect_with(lookup: impl Fn(&str) -> Option<String>) -> Launch {
        let Some(var) = LAUNCHER_VARS.into_iter().find(|v| lookup(v).is_some()) else {
            return Launch::Standalone;
        };
        let world_size = SIZE_VARS.into_iter().find_map(|v| {
            lookup(v)
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        });
        Launch::Mpi { var, world_size }
    }

    /// The world size when it is known: 1 for [`Launch::Standalone`], the launcher's size otherwise.
    pub fn world_size(&self) -> Option<usize> {
        match *self {
            Launch::Standalone => Some(1),
            Launch::Mpi { world_size, .. } => world_size,
        }
    }
}

/// The world size given by an MPI launcher's environment variables, or `None` when the process
/// was not started by one (or the launcher does not give the size, see [`Launch`]).
pub fn launched_world_size() -> Option<usize> {
    launched_world_size_with(|name| std::env::var(name).ok())
}

/// Like [`launched_world_size`], with `lookup(name)` in place of the environment.
pub fn launched_world_size_with(lookup: impl Fn(&str) -> Option<String>) -> Option<usize> {
    match Launch::detect_with(lookup) {
        Launch::Standalone => None,
        Launch::Mpi { world_size, .. } => world_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn standalone_without_launcher_vars() {
        let vars = [("HOME", "/root"), ("SLURM_NTASKS", "4")];
        assert_eq!(Launch::detect_with(env(&vars)), Launch::Standalone);
        assert_eq!(Launch::detect_with(env(&vars)).world_size(), Some(1));
        assert_eq!(launched_world_size_with(env(&vars)), None);
    }

    #[test]
    fn open_mpi_gives_the_size() {
        let vars = [
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("PMIX_RANK", "2"),
        ];
        assert_eq!(
            Launch::detect_with(env(&vars)),
            Launch::Mpi {
                var: "OMPI_COMM_WORLD_SIZE",
                world_size: Some(4)
            }
        );
        assert_eq!(launched_world_size_with(env(&vars)), Some(4));
    }

    #[test]
    fn mpich_gives_the_size() {
        let vars = [
            ("PMI_SIZE", " 8 "),
            ("PMI_RANK", "0"),
            ("MPI_LOCALNRANKS", "2"),
        ];
        assert_eq!(
            Launch::detect_with(env(&vars)),
            Launch::Mpi {
                var: "PMI_SIZE",
                world_size: Some(8)
            }
        );
        assert_eq!(launched_world_size_with(env(&vars)), Some(8));
        let one = [("PMI_SIZE", "1")];
        assert_eq!(launched_world_size_with(env(&one)), Some(1));
    }

    #[test]
    fn rank_only_launchers_have_an_unknown_size() {
        for vars in [[("PMIX_RANK", "0")], [("MPI_LOCALNRANKS", "2")]] {
            let launch = Launch::detect_with(env(&vars));
            assert_eq!(
                launch,
                Launch::Mpi {
                    var: vars[0].0,
                    world_size: None
                }
            );
            assert_eq!(launch.world_size(), None);
            assert_eq!(launched_world_size_with(env(&vars)), None);
        }
    }

    #[test]
    fn bad_sizes_are_unknown_but_still_launched() {
        for bad in ["", "zero", "0", "-2"] {
            let vars = [("OMPI_COMM_WORLD_SIZE", bad)];
            assert_eq!(
                Launch::detect_with(env(&vars)),
                Launch::Mpi {
                    var: "OMPI_COMM_WORLD_SIZE",
                    world_size: None
                },
                "{bad:?}"
            );
        }
        // A bad first size falls back to the next size variable.
        let vars = [("OMPI_COMM_WORLD_SIZE", "x"), ("PMI_SIZE", "3")];
        assert_eq!(launched_world_size_with(env(&vars)), Some(3));
    }
}
