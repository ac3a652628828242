//! A uniform grid over the world, for "who is near this point" without looking at everyone.
//!
//! Cells are `cell` units wide (the view radius), so the entities within the view radius of a
//! point lie in the 3 × 3 cells around it: a query costs the entities of 9 cells, whatever the
//! number of entities in the world. The grid is rebuilt after each tick's movement, in time
//! linear in the number of entities.

/// Entities by cell.
#[derive(Debug)]
pub struct Grid {
    cell: f32,
    side: usize,
    cells: Vec<Vec<(u64, f32, f32)>>,
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
