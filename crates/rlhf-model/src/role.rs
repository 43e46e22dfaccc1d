//! What trainers need of a model besides its role ([`crate::Policy`],
//! [`crate::ValueFunction`], a trainable reward model): writing it into a checkpoint directory,
//! restoring it from one, and the training-time switches (dropout, mixed precision). The SFT,
//! reward and PPO trainers save and resume models only through these traits, so resume works
//! for any architecture that implements them; [`crate::CausalLm`] and [`crate::ScalarModel`]
//! do.

use crate::checkpoint::{resolve_dir, CheckpointMeta};
use crate::error::{ModelError, Result};
use crate::{Policy, ValueFunction};
use std::path::Path;
use std::rc::Rc;
use tch::{nn, Kind};

/// A model that can be written as a checkpoint directory (the role's weights, config and
/// tokenizer, loadable again by its own loader): what trainers' checkpoints call for each model
/// they train, whatever its type.
pub trait SaveDir {
    /// Writes the checkpoint directory `dir` atomically.
    fn save_dir(&self, dir: &Path) -> Result<()>;
}

/// A model a trainer can checkpoint and resume: its weights plus the trainer's own files in one
/// atomic directory, and back.
///
/// The contract: `restore_from(d)` after `save_with_extras(d, ..)` leaves the model's
/// variables bit-identical to what was saved (a resumed run must continue exactly), and errors,
/// naming the variable, when the directory holds another architecture.
pub trait Checkpointable: SaveDir {
    /// Checkpoint metadata (training step, reward normalization, free-form `extra`), saved with
    /// the weights.
    fn meta(&self) -> &CheckpointMeta;

    /// Mutable checkpoint metadata.
    fn meta_mut(&mut self) -> &mut CheckpointMeta;

    /// Writes the checkpoint directory `dir` with `extras` (file name, bytes: a trainer's
    /// optimizer state, its position) beside the model's files, as one atomic directory write:
    /// after a crash `dir` is either the old complete directory or the new one.
    fn save_with_extras(&self, dir: &Path, extras: Vec<(&str, Vec<u8>)>) -> Result<()>;

    /// Loads the weights (and metadata) of a directory written by
    /// [`Checkpointable::save_with_extras`] into this model, in place: the optimizer that holds
    /// its variables stays valid.
    fn restore_from(&mut self, dir: &Path) -> Result<()>;
}

/// Training-time switches a trainer sets when its config asks for them. The defaults say "not
/// supported": asking for dropout or autocast on a model that lacks it is an error, never
/// silently ignored.
pub trait TrainingSwitches {
    /// True when the checkpoint was pretrained with dropout (GPT-2), so the paper's residual
    /// dropout suits it; false for the Llama family, pretrained without. Default false.
    fn pretrained_with_dropout(&self) -> bool {
        false
    }

    /// Sets the residual-dropout probability used when `train = true`.
    fn set_residual_dropout(&mut self, p: f64) -> Result<()> {
        Err(ModelError::Config(format!(
            "this model has no residual dropout to set to {p}: use residual_dropout = \"off\""
        )))
    }

    /// Runs the forward pass in `kind` (bf16 autocast), or in the weights' precision (`None`).
    fn set_autocast(&mut self, kind: Option<Kind>) -> Result<()> {
        match kind {
            None => Ok(()),
            Some(k) => Err(ModelError::Config(format!(
                "this model has no {k:?} autocast: turn bf16_autocast off"
            ))),
        }
    }
}

/// Copies `src`'s variables into `dst`'s of the same names and shapes (in place, without
/// gradient), erroring on a variable `src` lacks or has in another shape: how a checkpoint's
/// weights are restored into a model an optimizer already holds.
pub fn copy_variables(dst: &nn::VarStore, src: &nn::VarStore, dir: &Path) -> Result<()> {
    let _g = tch::no_grad_guard();
    let src = src.variables();
    for (name, mut var) in dst.variables() {
        let s = src.get(&name).ok_or_else(|| {
            ModelError::ckpt(
                dir,
                format!("the saved model has no {name}: a different architecture"),
            )
        })?;
        if s.size() != var.size() {
            return Err(ModelError::ckpt(
                dir,
                format!(
                    "{name} is {:?} there but {:?} here: a different architecture",
                    s.size(),
                    var.size()
                ),
            ));
        }
        var.copy_(s);
    }
    Ok(())
}

/// The role traits of this crate's models, written once for both: `$role` names the trait
/// through which the type's `var_store` and `device` are called (each type has them in two
/// traits).
macro_rules! model_roles {
    ($ty:ty, $role:ident) => {
        impl SaveDir for $ty {
            fn save_dir(&self, dir: &Path) -> Result<()> {
                self.save(dir)
            }
        }

        impl Checkpointable for $ty {
            fn meta(&self) -> &CheckpointMeta {
                <$ty>::meta(self)
            }

            fn meta_mut(&mut self) -> &mut CheckpointMeta {
                <$ty>::meta_mut(self)
            }

            fn save_with_extras(&self, dir: &Path, extras: Vec<(&str, Vec<u8>)>) -> Result<()> {
                self.save_with(dir, extras)
            }

            fn restore_from(&mut self, dir: &Path) -> Result<()> {
                let dir = resolve_dir(dir)?;
                let saved = <$ty>::load(&dir, $role::device(self))?;
                copy_variables($role::var_store(self), $role::var_store(&saved), &dir)?;
                *self.meta_mut() = saved.meta().clone();
                Ok(())
            }
        }

        impl TrainingSwitches for $ty {
            fn pretrained_with_dropout(&self) -> bool {
                self.config().as_gpt2().is_some()
            }

            fn set_residual_dropout(&mut self, p: f64) -> Result<()> {
                let d = self.config().dropouts();
                self.set_dropout(p, d.embd, d.attn);
                Ok(())
            }

            fn set_autocast(&mut self, kind: Option<Kind>) -> Result<()> {
                <$ty>::set_autocast(self, kind);
                Ok(())
            }
        }
    };
}

model_roles!(crate::CausalLm, Policy);
model_roles!(crate::ScalarModel, ValueFunction);

impl<T: SaveDir + ?Sized> SaveDir for Rc<T> {
    fn save_dir(&self, dir: &Path) -> Result<()> {
        (**self).save_dir(dir)
    }
}

impl<T: SaveDir + ?Sized> SaveDir for Box<T> {
    fn save_dir(&self, dir: &Path) -> Result<()> {
        (**self).save_dir(dir)
    }
}

impl<T: Checkpointable + ?Sized> Checkpointable for Box<T> {
    fn meta(&self) -> &CheckpointMeta {
        (**self).meta()
    }

    fn meta_mut(&mut self) -> &mut CheckpointMeta {
        (**self).meta_mut()
    }

    fn save_with_extras(&self, dir: &Path, extras: Vec<(&str, Vec<u8>)>) -> Result<()> {
        (**self).save_with_extras(dir, extras)
    }

    fn restore_from(&mut self, dir: &Path) -> Result<()> {
        (**self).restore_from(dir)
    }
}
