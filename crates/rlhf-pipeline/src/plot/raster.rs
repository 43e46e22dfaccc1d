//! An RGB pixel buffer with the few drawing operations the charts need: rectangles, thick
//! lines (clipped to a rectangle), dashed lines, square markers and bitmap text.

use super::font::{glyph, ADVANCE, GLYPH_H};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// An axis-aligned rectangle in pixels: `x0..x1`, `y0..y1` (exclusive ends).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x0: i64,
    /// Top edge.
    pub y0: i64,
    /// One past the right edge.
    pub x1: i64,
    /// One past the bottom edge.
    pub y1: i64,
}

impl Rect {
    /// Whether the pixel `(x, y)` is inside.
    pub fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }

    /// Width in pixels.
    pub fn width(&self) -> i64 {
        self.x1 - self.x0
    }

    /// Height in pixels.
    pub fn height(&self) -> i64 {
        self.y1 - self.y0
    }
}

/// An RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: u32, height: u32, background: Rgb) -> Self {
        let pixels = background
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// The whole canvas as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect {
            x0: 0,
            y0: 0,
            x1: self.width as i64,
            y1: self.height as i64,
        }
    }

    /// The colour at `(x, y)` (`None` outside).
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        if !self.bounds().contains(x, y) {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Sets one pixel if it lies inside `clip` and the canvas.
    pub fn put(&mut self, x: i64, y: i64, color: Rgb, clip: Rect) {
        if !clip.contains(x, y) || !self.bounds().contains(x, y) {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&color);
    }

    /// Fills a rectangle.
    pub fn fill(&mut self, r: Rect, color: Rgb) {
        let b = self.bounds();
        for y in r.y0.max(0)..r.y1.min(b.y1) {
            for x in r.x0.max(0)..r.x1.min(b.x1) {
                self.put(x, y, color, b);
            }
        }
    }

    /// The outline of a rectangle, one pixel wide.
    pub fn outline(&mut self, r: Rect, color: Rgb) {
        let b = self.bounds();
        for x in r.x0..r.x1 {
            self.put(x, r.y0, color, b);
            self.put(x, r.y1 - 1, color, b);
        }
        for y in r.y0..r.y1 {
            self.put(r.x0, y, color, b);
            self.put(r.x1 - 1, y, color, b);
        }
    }

    /// A square of side `size` centred on `(x, y)`, clipped to `clip`.
    pub fn dot(&mut self, x: i64, y: i64, size: i64, color: Rgb, clip: Rect) {
        let lo = -(size - 1) / 2;
        for dy in lo..lo + size {
            for dx in lo..lo + size {
                self.put(x + dx, y + dy, color, clip);
            }
        }
    }

    /// A line of the given thickness between two points (Bresenham, a square brush), clipped to
    /// `clip`. Endpoints far outside the canvas are clamped first, so any finite input is safe.
    #[allow(clippy::too_many_arguments)]
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: i64, color: Rgb, clip: Rect) {
        self.line_pattern(x0, y0, x1, y1, width, color, clip, None);
    }

    /// A dashed line: `on` pixels drawn, `off` pixels skipped, repeating.
    #[allow(clippy::too_many_arguments)]
    pub fn dashed(
        &mut self,
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        width: i64,
        color: Rgb,
        clip: Rect,
        (on, off): (usize, usize),
    ) {
        self.line_pattern(x0, y0, x1, y1, width, color, clip, Some((on, off)));
    }

    #[allow(clippy::too_many_arguments)]
    fn line_pattern(
        &mut self,
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        width: i64,
        color: Rgb,
        clip: Rect,
        dash: Option<(usize, usize)>,
    ) {
        if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
            return;
        }
        // Keep the loop bounded whatever the coordinates: clamp to a margin around the canvas
        // (this bends lines that leave the canvas far away, which the clip hides anyway).
        let lim = 4.0 * (self.width.max(self.height) as f64 + 16.0);
        let c = |v: f64| v.clamp(-lim, lim).round() as i64;
        let (mut x, mut y, xe, ye) = (c(x0), c(y0), c(x1), c(y1));
        let dx = (xe - x).abs();
        let dy = -(ye - y).abs();
        let sx = if x < xe { 1 } else { -1 };
        let sy = if y < ye { 1 } else { -1 };
        let mut err = dx + dy;
        let mut n = 0usize;
        loop {
            let draw = match dash {
                Some((on, off)) => n % (on + off).max(1) < on,
                None => true,
            };
            if draw {
                self.dot(x, y, width, color, clip);
            }
            n += 1;
            if x == xe && y == ye {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel a `scale` x `scale`
    /// square.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) {
        let b = self.bounds();
        let s = scale as i64;
        for (i, ch) in text.chars().enumerate() {
            let gx = x + (i * ADVANCE * scale) as i64;
            for (row, bits) in glyph(ch).iter().enumerate().take(GLYPH_H) {
                for (col, bit) in bits.bytes().enumerate() {
                    if bit != b'#' {
                        continue;
                    }
                    let px = gx + col as i64 * s;
                    let py = y + row as i64 * s;
                    for dy in 0..s {
                        for dx in 0..s {
                            self.put(px + dx, py + dy, color, b);
                        }
                    }
                }
            }
        }
    }
}
