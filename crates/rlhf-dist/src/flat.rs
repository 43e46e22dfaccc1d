//! Flattening of a list of tensors into one host buffer and back, for backends that move bytes.
//!
//! Undefined tensors (e.g. the gradient of a parameter that took no part in the loss) are
//! skipped everywhere, so a list flattens to the concatenation of its defined tensors.
#![cfg_attr(not(feature = "mpi"), allow(dead_code))]

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// The defined tensors of `tensors`.
fn defined(tensors: &[Tensor]) -> impl Iterator<Item = &Tensor> {
    tensors.iter().filter(|t| t.defined())
}

/// The device of every defined tensor when they share one, else the CPU.
fn common_device(tensors: &[Tensor]) -> Device {
    let mut devices = defined(tensors).map(Tensor::device);
    let first = devices.next().unwrap_or(Device::Cpu);
    if devices.all(|d| d == first) {
        first
    } else {
        Device::Cpu
    }
}

/// A description of the list (kinds and shapes, `-` for an undefined tensor), for checking
/// that every rank passes the same list.
pub(crate) fn layout(tensors: &[Tensor]) -> Result<Vec<u8>> {
    let mut out = String::new();
    for t in tensors {
        if t.defined() {
            out.push_str(&format!("{:?}{:?};", t.f_kind()?, t.size()));
        } else {
            out.push_str("-;");
        }
    }
    Ok(out.into_bytes())
}

/// The kind of the host buffer that averages `tensors`: `Double` when one of them is `Double`,
/// else `Float`; `None` when no tensor is defined. Errors on a tensor that is not floating-point.
pub(crate) fn mean_kind(tensors: &[Tensor]) -> Result<Option<Kind>> {
    let mut kind = None;
    for (index, t) in tensors.iter().enumerate().filter(|(_, t)| t.defined()) {
        let k = t.f_kind()?;
        if !t.f_is_floating_point()? {
            return Err(Error::NotFloat { index, kind: k });
        }
        if k == Kind::Double || kind.is_none() {
            kind = Some(if k == Kind::Double {
                Kind::Double
            } else {
                Kind::Float
            });
        }
    }
    Ok(kind)
}

/// Concatenates the defined tensors, converted to `T`'s kind, into one host vector: one
/// concatenation on their common device, then one copy to the host.
pub(crate) fn flatten<T: tch::kind::Element>(tensors: &[Tensor]) -> Result<Vec<T>> {
    let _guard = tch::no_grad_guard();
    let device = common_device(tensors);
    let parts = defined(tensors)
        .map(|t| {
            t.f_to_device_(device, T::KIND, false, false)?
                .f_reshape([-1])
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let flat = Tensor::f_cat(&parts, 0)?;
    drop(parts);
    let numel = flat.numel();
    let mut out = vec![T::ZERO; numel];
    flat.f_copy_data(&mut out, numel)?;
    Ok(out)
}

/// Copies `data` (as made by [`flatten`]), divided by `divisor`, back into the defined tensors,
/// in place, converting to each tensor's kind and device.
pub(crate) fn unflatten<T: tch::kind::Element>(
    tensors: &[Tensor],
    data: &[T],
    divisor: f64,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut src = Tensor::f_from_slice(data)?;
    if divisor != 1.0 {
        let _ = src.f_div_scalar_(divisor)?;
    }
    let src = src.f_to(common_device(tensors))?;
    let mut offset = 0i64;
    for t in defined(tensors) {
        let numel = t.numel() as i64;
        let part = src
            .f_narrow(0, offset, numel)?
            .f_view(t.size().as_slice())?;
        t.shallow_clone().f_copy_(&part)?;
        offset += numel;
    }
    Ok(())
}

/// The number of bytes of the defined tensors, each in its own kind.
pub(crate) fn byte_len(tensors: &[Tensor]) -> Result<usize> {
    let mut len = 0;
    for t in defined(tensors) {
        len += t.numel() * t.f_kind()?.elt_size_in_bytes();
    }
    Ok(len)
}

/// The raw bytes of the defined tensors, each in its own kind, one after the other.
pub(crate) fn to_bytes(tensors: &[Tensor]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; byte_len(tensors)?];
    let mut offset = 0;
    for t in defined(tensors) {
        let numel = t.numel();
        let len = numel * t.f_kind()?.elt_size_in_bytes();
        if numel > 0 {
            t.f_copy_data_u8(&mut out[offset..offset + len], numel)?;
        }
        offset += len;
    }
    Ok(out)
}

/// Copies bytes made by [`to_bytes`] (from a list with the same layout) back into the defined
/// tensors, in place.
pub(crate) fn from_bytes(tensors: &[Tensor], bytes: &[u8]) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut offset = 0;
    for t in defined(tensors) {
        let kind = t.f_kind()?;
        let numel = t.numel();
        let len = numel * kind.elt_size_in_bytes();
        if numel > 0 {
            let src = Tensor::f_from_data_size(&bytes[offset..offset + len], &t.size(), kind)?;
            t.shallow_clone().f_copy_(&src)?;
        }
        offset += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_and_unflatten_round_trip_with_mean() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let b = Tensor::from_slice(&[8.0f32, 10.0]).to_kind(Kind::BFloat16);
        // A non-contiguous view: the transpose of a 2x2.
        let base = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let c = base.tr();
        let list = [a.shallow_clone(), Tensor::new(), b.shallow_clone(), c];
        assert_eq!(mean_kind(&list).unwrap(), Some(Kind::Float));
        let flat: Vec<f32> = flatten(&list).unwrap();
        assert_eq!(
            flat,
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 1.0, 3.0, 2.0, 4.0]
        );
        let doubled: Vec<f32> = flat.iter().map(|x| x * 2.0).collect();
        unflatten(&list, &doubled, 4.0).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(a.view([-1])).unwrap(),
            [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
        );
        assert_eq!(b.kind(), Kind::BFloat16);
        assert_eq!(
            Vec::<f32>::try_from(b.to_kind(Kind::Float)).unwrap(),
            [4.0, 5.0]
        );
        // Written through the transposed view into its base.
        assert_eq!(
            Vec::<f32>::try_from(base.view([-1])).unwrap(),
            [0.5, 1.0, 1.5, 2.0]
        );
    }

    #[test]
    fn mean_kind_picks_double_and_rejects_integers() {
        let f = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let d = Tensor::zeros([2], (Kind::Double, Device::Cpu));
        let i = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        assert_eq!(mean_kind(&[]).unwrap(), None);
        assert_eq!(mean_kind(&[Tensor::new()]).unwrap(), None);
        assert_eq!(
            mean_kind(&[f.shallow_clone(), d.shallow_clone()]).unwrap(),
            Some(Kind::Double)
        );
        assert_eq!(
            mean_kind(&[d, f.shallow_clone()]).unwrap(),
            Some(Kind::Double)
        );
        match mean_kind(&[f, i]) {
            Err(Error::NotFloat { index: 1, kind }) => assert_eq!(kind, Kind::Int64),
            other => panic!("expected NotFloat, got {other:?}"),
        }
    }

    #[test]
    fn bytes_round_trip_every_kind() {
        let src = [
            Tensor::from_slice(&[1i64, -2, 3]),
            Tensor::new(),
            Tensor::from_slice(&[true, false]),
            Tensor::from_slice(&[0.1f32, 0.2]).to_kind(Kind::BFloat16),
            Tensor::from_slice(&[1.5f64]).view([1, 1]),
            Tensor::zeros([0], (Kind::Float, Device::Cpu)),
        ];
        let dst: Vec<Tensor> = src
            .iter()
            .map(|t| {
                if t.defined() {
                    t.zeros_like()
                } else {
                    Tensor::new()
                }
            })
            .collect();
        assert_eq!(layout(&src).unwrap(), layout(&dst).unwrap());
        let bytes = to_bytes(&src).unwrap();
        assert_eq!(bytes.len(), byte_len(&src).unwrap());
        assert_eq!(bytes.len(), 3 * 8 + 2 + 2 * 2 + 8);
        from_bytes(&dst, &bytes).unwrap();
        for (s, d) in src.iter().zip(&dst) {
            if s.defined() {
                assert!(s.equal(d), "{s:?} != {d:?}");
            }
        }
    }

    #[test]
    fn layout_tells_kinds_shapes_and_holes_apart() {
        let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let c = Tensor::zeros([2, 3], (Kind::Half, Device::Cpu));
        let l = |ts: &[Tensor]| layout(ts).unwrap();
        assert_ne!(l(&[a.shallow_clone()]), l(&[b]));
        assert_ne!(l(&[a.shallow_clone()]), l(&[c]));
        assert_ne!(
            l(&[a.shallow_clone()]),
            l(&[a.shallow_clone(), Tensor::new()])
        );
        assert_eq!(l(&[a.shallow_clone()]), l(&[a.zeros_like()]));
    }
}
