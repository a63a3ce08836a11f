//! StackPath instance sizes and the choice of the smallest one that fits.

use crate::quantity::Quantity;

/// One of StackPath's container sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub name: &'static str,
    pub cpu_cores: u128,
    pub memory_gib: u128,
    /// The same figures as StackPath expects them in `resources` (`"2"`, `"4Gi"`).
    cpu_text: &'static str,
    memory_text: &'static str,
}

impl Size {
    /// The size's own figures as StackPath expects them in `resources`.
    pub fn cpu(&self) -> &'static str {
        self.cpu_text
    }
    pub fn memory(&self) -> &'static str {
        self.memory_text
    }
}

pub const SIZES: [Size; 8] = [
    Size {
        name: "SP-1",
        cpu_cores: 1,
        memory_gib: 2,
        cpu_text: "1",
        memory_text: "2Gi",
    },
    Size {
        name: "SP-2",
        cpu_cores: 2,
        memory_gib: 4,
        cpu_text: "2",
        memory_text: "4Gi",
    },
    Size {
        name: "SP-3",
        cpu_cores: 2,
        memory_gib: 8,
        cpu_text: "2",
        memory_text: "8Gi",
    },
    Size {
        name: "SP-4",
        cpu_cores: 4,
        memory_gib: 16,
        cpu_text: "4",
        memory_text: "16Gi",
    },
    Size {
        name: "SP-5",
        cpu_cores: 8,
        memory_gib: 32,
        cpu_text: "8",
        memory_text: "32Gi",
    },
    Size {
        name: "SP-6",
        cpu_cores: 16,
        memory_gib: 64,
        cpu_text: "16",
        memory_text: "64Gi",
    },
    Size {
        name: "SP-7",
        cpu_cores: 32,
        memory_gib: 128,
        cpu_text: "32",
        memory_text: "128Gi",
    },
    Size {
        name: "SP-8",
        cpu_cores: 48,
        memory_gib: 256,
        cpu_text: "48",
        memory_text: "256Gi",
    },
];

/// The smallest size holding both figures, or `Err(largest)` when none does.
pub fn smallest_fitting(cpu: &Quantity, memory: &Quantity) -> Result<Size, Size> {
    SIZES
        .iter()
        .find(|s| {
            cpu.cmp_exact(&Quantity::units(s.cpu_cores)).is_le()
                && memory.cmp_exact(&Quantity::gib(s.memory_gib)).is_le()
        })
        .copied()
        .ok_or(SIZES[SIZES.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(cpu: &str, mem: &str) -> &'static str {
        match smallest_fitting(
            &Quantity::parse(cpu).unwrap(),
            &Quantity::parse(mem).unwrap(),
        ) {
            Ok(s) => s.name,
            Err(_) => "too big",
        }
    }

    #[test]
    fn figures_match_the_numbers() {
        for s in SIZES {
            assert_eq!(s.cpu(), s.cpu_cores.to_string(), "{}", s.name);
            assert_eq!(s.memory(), format!("{}Gi", s.memory_gib), "{}", s.name);
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(fit("1", "2Gi"), "SP-1");
        assert_eq!(fit("1001m", "2Gi"), "SP-2");
        assert_eq!(fit("1", "2049Mi"), "SP-2");
        assert_eq!(fit("2", "4Gi"), "SP-2");
        assert_eq!(fit("2", "5Gi"), "SP-3");
        assert_eq!(fit("3", "1Gi"), "SP-4");
        assert_eq!(fit("1", "9Gi"), "SP-4");
        assert_eq!(fit("48", "256Gi"), "SP-8");
        assert_eq!(fit("49", "1Gi"), "too big");
        assert_eq!(fit("1", "257Gi"), "too big");
        // 2G (decimal) is less than 2Gi: still SP-1.
        assert_eq!(fit("1", "2G"), "SP-1");
    }
}
