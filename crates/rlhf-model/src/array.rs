//! Host-side 2-D arrays (`ndarray`) to and from tensors: how collated batches
//! (`rlhf_data::collate`'s `*_2d()` views) become model inputs, and how a rule-based reward or
//! an evaluation reads a tensor back as an array.

use crate::error::{ModelError, Result};
use ndarray::{Array2, ArrayView2};
use tch::{kind::Element, Device, Tensor};

/// A `[rows, cols]` tensor on `device` holding `a` (any layout: a strided view is copied into
/// row-major order first).
pub fn tensor_from<T: Element + Copy>(a: ArrayView2<'_, T>, device: Device) -> Tensor {
    let (r, c) = a.dim();
    let t = match a.as_slice() {
        Some(s) => Tensor::from_slice(s),
        None => Tensor::from_slice(&a.iter().copied().collect::<Vec<T>>()),
    };
    t.view([r as i64, c as i64]).to_device(device)
}

/// A 2-D tensor (any device, any kind convertible to `T`) as an owned array, e.g. the response
/// tokens of a rollout for a rule-based reward.
pub fn array_from<T: Element + Copy>(t: &Tensor) -> Result<Array2<T>> {
    let (r, c) = t
        .size2()
        .map_err(|_| ModelError::Input(format!("expected a 2-D tensor, got {:?}", t.size())))?;
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(T::KIND)
        .contiguous()
        .view([-1]);
    let v = Vec::<T>::try_from(&flat).map_err(|e| ModelError::Input(e.to_string()))?;
    Ok(Array2::from_shape_vec((r as usize, c as usize), v).expect("the tensor's shape"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn round_trips_and_strided_views() {
        let a = array![[1i64, 2, 3], [4, 5, 6]];
        let t = tensor_from(a.view(), Device::Cpu);
        assert_eq!(t.size(), [2, 3]);
        assert_eq!(array_from::<i64>(&t).unwrap(), a);
        // A transposed (non-contiguous) view keeps its logical order.
        let tt = tensor_from(a.t(), Device::Cpu);
        assert_eq!(array_from::<i64>(&tt).unwrap(), a.t().to_owned());
        // Kinds convert on the way back.
        let f = array_from::<f32>(&t).unwrap();
        assert_eq!(f[[1, 2]], 6.0);
        assert!(array_from::<f32>(&Tensor::zeros([3], tch::kind::FLOAT_CPU)).is_err());
    }
}
