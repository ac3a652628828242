//! A uniform grid over the world, for "who is near this point" without looking at everyone.
//!
//! Cells are `cell` units wide (the view radius), so the entities within the view radius of a
//! point lie in the 3 × 3 cells around it: a query costs the entities of 9 cells, whatever the
//! number of entities in the world. The grid is rebuilt after each tick's movement, in time
//! linear in the number of entities.
//!
//! A crowd (many entities in one cell) would make that the square of its size: every member
//! looks at every other. So [`Grid::nearest`] asks for the `k` nearest only, and the cells
//! holding more than [`CROWDED`] entities are sorted by x once a tick ([`Grid::index`]): a
//! query walks out from its own x and stops as soon as what is left is farther than the `k`
//! nearest found, a few dozen entities in a dense crowd instead of all of them.

/// Cells with more entities than this are sorted by x for [`Grid::nearest`].
pub const CROWDED: usize = 128;

/// Entities by cell.
#[derive(Debug)]
pub struct Grid {
    cell: f32,
    side: usize,
    cells: Vec<Vec<(u64, f32, f32)>>,
}

/// The `k` nearest entities offered so far, within a bound: kept in a buffer of up to `2k`,
/// cut back to the `k` nearest when it fills, so that an offer costs O(1) on the whole.
struct Nearest<'a> {
    k: usize,
    /// Squared distance past which an offer cannot be among the `k` nearest.
    bound: f32,
    items: &'a mut Vec<(f32, u64, f32, f32)>,
}

impl Nearest<'_> {
    fn offer(&mut self, d2: f32, id: u64, x: f32, y: f32) {
        if d2 > self.bound {
            return;
        }
        self.items.push((d2, id, x, y));
        if self.items.len() >= 2 * self.k {
            self.cut();
        }
    }

    /// Keeps the `k` nearest; the bound becomes the farthest of them.
    fn cut(&mut self) {
        if self.items.len() > self.k {
            self.items
                .select_nth_unstable_by(self.k - 1, |a, b| a.0.total_cmp(&b.0));
            self.items.truncate(self.k);
            self.bound = self.items[self.k - 1].0;
        }
    }

    /// Whether `k` are kept and nothing at squared distance `d2` or more can do better.
    fn full_beyond(&self, d2: f32) -> bool {
        self.items.len() >= self.k && d2 >= self.bound
    }
}

impl Grid {
    /// An empty grid over `[0, world_size)²` with cells `cell` units wide.
    pub fn new(world_size: f32, cell: f32) -> Grid {
        let cell = cell.max(1.0);
        let side = ((world_size / cell).ceil() as usize).max(1);
        Grid {
            cell,
            side,
            cells: vec![Vec::new(); side * side],
        }
    }

    /// Removes every entity, keeping the cells' memory.
    pub fn clear(&mut self) {
        for cell in &mut self.cells {
            cell.clear();
        }
    }

    fn coord(&self, v: f32) -> usize {
        ((v / self.cell).floor().max(0.0) as usize).min(self.side - 1)
    }

    /// Puts entity `id` at (`x`, `y`).
    pub fn insert(&mut self, id: u64, x: f32, y: f32) {
        let index = self.coord(y) * self.side + self.coord(x);
        self.cells[index].push((id, x, y));
    }

    /// Sorts the crowded cells by x, for [`Grid::nearest`]: once after the tick's inserts.
    pub fn index(&mut self) {
        for cell in &mut self.cells {
            if cell.len() > CROWDED {
                cell.sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
            }
        }
    }

    /// The `k` entities nearest to (`x`, `y`) within `radius` (at most the cell size), entity
    /// `skip` left out, into `out` (cleared first) as (squared distance, id, x, y), in no
    /// order; ties at the `k`-th distance are broken arbitrarily. Call [`Grid::index`] after
    /// inserting.
    pub fn nearest(
        &self,
        x: f32,
        y: f32,
        radius: f32,
        k: usize,
        skip: u64,
        out: &mut Vec<(f32, u64, f32, f32)>,
    ) {
        out.clear();
        if k == 0 {
            return;
        }
        let mut nearest = Nearest {
            k,
            bound: radius * radius,
            items: out,
        };
        let (cx, cy) = (self.coord(x), self.coord(y));
        for gy in cy.saturating_sub(1)..=(cy + 1).min(self.side - 1) {
            for gx in cx.saturating_sub(1)..=(cx + 1).min(self.side - 1) {
                let cell = &self.cells[gy * self.side + gx];
                let offer = |nearest: &mut Nearest, &(id, ex, ey): &(u64, f32, f32)| {
                    if id != skip {
                        let (ddx, ddy) = (ex - x, ey - y);
                        nearest.offer(ddx * ddx + ddy * ddy, id, ex, ey);
                    }
                };
                if cell.len() <= CROWDED {
                    for entity in cell {
                        offer(&mut nearest, entity);
                    }
                    continue;
                }
                // Sorted by x: out from x in both directions, nearer x first, until the rest
                // is farther in x alone than the k nearest found.
                let start = cell.partition_point(|e| e.1 < x);
                let (mut left, mut right) = (start, start);
                loop {
                    let dl = (left > 0).then(|| x - cell[left - 1].1);
                    let dr = (right < cell.len()).then(|| cell[right].1 - x);
                    let take_left = match (dl, dr) {
                        (None, None) => break,
                        (Some(l), Some(r)) => l <= r,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                    };
                    let dx = if take_left { dl } else { dr }.unwrap_or(0.0);
                    if dx * dx > nearest.bound || nearest.full_beyond(dx * dx) {
                        break;
                    }
                    if take_left {
                        left -= 1;
                        offer(&mut nearest, &cell[left]);
                    } else {
                        offer(&mut nearest, &cell[right]);
                        right += 1;
                    }
                }
            }
        }
        nearest.cut();
    }

    /// Calls `found` with every entity within `radius` of (`x`, `y`) (`radius` at most the
    /// cell size), itself included if it is there.
    pub fn near(&self, x: f32, y: f32, radius: f32, mut found: impl FnMut(u64, f32, f32)) {
        let (cx, cy) = (self.coord(x), self.coord(y));
        let r2 = radius * radius;
        for gy in cy.saturating_sub(1)..=(cy + 1).min(self.side - 1) {
            for gx in cx.saturating_sub(1)..=(cx + 1).min(self.side - 1) {
                for &(id, ex, ey) in &self.cells[gy * self.side + gx] {
                    let (ddx, ddy) = (ex - x, ey - y);
                    if ddx * ddx + ddy * ddy <= r2 {
                        found(id, ex, ey);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so that the test needs no crate.
    fn positions(n: usize, size: f32) -> Vec<(u64, f32, f32)> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * size
        };
        (0..n as u64).map(|id| (id, next(), next())).collect()
    }

    #[test]
    fn a_query_finds_exactly_what_a_scan_of_every_entity_finds() {
        let (size, radius) = (500.0, 40.0);
        let all = positions(3000, size);
        let mut grid = Grid::new(size, radius);
        for &(id, x, y) in &all {
            grid.insert(id, x, y);
        }
        for &(_, x, y) in all.iter().step_by(37) {
            let mut near = Vec::new();
            grid.near(x, y, radius, |id, _, _| near.push(id));
            near.sort();
            let mut scan: Vec<u64> = all
                .iter()
                .filter(|(_, ex, ey)| (ex - x).powi(2) + (ey - y).powi(2) <= radius * radius)
                .map(|(id, _, _)| *id)
                .collect();
            scan.sort();
            assert_eq!(near, scan);
        }
    }

    /// The k nearest, from a crowd in one cell (sorted) and from sparse cells alike, are
    /// those a scan of everything sorted by distance gives.
    #[test]
    fn the_nearest_are_those_a_full_scan_finds_in_a_crowd_and_out_of_one() {
        let (size, radius, k) = (500.0, 40.0, 16);
        let mut all = positions(2000, size);
        // A crowd: 600 in a corner of one cell, 200 of them on one spot.
        for (i, e) in all.iter_mut().take(600).enumerate() {
            let spread = if i < 200 { 0.0 } else { (i % 37) as f32 * 0.3 };
            e.1 = 205.0 + spread;
            e.2 = 207.0 + (i % 11) as f32 * 0.2 * (spread > 0.0) as u8 as f32;
        }
        let mut grid = Grid::new(size, radius);
        for &(id, x, y) in &all {
            grid.insert(id, x, y);
        }
        grid.index();
        let mut out = Vec::new();
        for &(me, x, y) in all.iter().step_by(13) {
            grid.nearest(x, y, radius, k, me, &mut out);
            let mut found: Vec<f32> = out.iter().map(|e| e.0).collect();
            found.sort_by(f32::total_cmp);
            let mut scan: Vec<f32> = all
                .iter()
                .filter(|(id, _, _)| *id != me)
                .map(|(_, ex, ey)| (ex - x).powi(2) + (ey - y).powi(2))
                .filter(|d2| *d2 <= radius * radius)
                .collect();
            scan.sort_by(f32::total_cmp);
            scan.truncate(k);
            assert_eq!(found, scan, "around ({x}, {y})");
            assert!(out.iter().all(|e| e.1 != me));
        }
    }

    #[test]
    fn entities_on_the_edges_and_outside_the_world_are_kept_in_the_border_cells() {
        let mut grid = Grid::new(100.0, 30.0);
        grid.insert(1, 0.0, 0.0);
        grid.insert(2, 99.999, 99.999);
        grid.insert(3, 150.0, -5.0);
        let mut found = Vec::new();
        grid.near(100.0, 100.0, 1.0, |id, _, _| found.push(id));
        assert_eq!(found, [2]);
        grid.clear();
        let mut none = Vec::new();
        grid.near(0.0, 0.0, 30.0, |id, _, _| none.push(id));
        assert!(none.is_empty());
    }
}
