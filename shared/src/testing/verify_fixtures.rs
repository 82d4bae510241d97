//! Verify's error fixtures (issue #16): shared by `shared/tests/sandbox_build_check.rs`,
//! which shows the dev-server check finds what the build found on each, and
//! the `verify` bench, which measures both.

/// One error fixture: files written over the template, and the problems
/// both checks must report (file, line, a phrase of the message).
pub struct Fixture {
    /// What it shows.
    pub name: &'static str,
    /// Files written over the template.
    pub files: &'static [(&'static str, &'static str)],
    /// Problems each check must report: (file, line or 0, a phrase of the message).
    pub expect: &'static [(&'static str, u32, &'static str)],
    /// Whether `tsc` sees it (the last three it does not: they need Vite).
    pub tsc_sees_it: bool,
}

/// Every fixture; the first is the clean template.
pub const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "clean",
        files: &[],
        expect: &[],
        tsc_sees_it: false,
    },
    Fixture {
        name: "type error",
        files: &[(
            "src/App.tsx",
            "export default function App() {\n  const n: number = \"not a number\";\n  return <p>{n}</p>;\n}\n",
        )],
        expect: &[("src/App.tsx", 2, "not assignable")],
        tsc_sees_it: true,
    },
    Fixture {
        name: "missing module",
        files: &[(
            "src/App.tsx",
            "import { thing } from \"./missing\";\n\nexport default function App() {\n  return <p>{thing}</p>;\n}\n",
        )],
        expect: &[("src/App.tsx", 1, "./missing")],
        tsc_sees_it: true,
    },
    Fixture {
        name: "syntax error",
        files: &[(
            "src/App.tsx",
            "export default function App() {\n  return <div>{x</div>;\n}\n",
        )],
        expect: &[("src/App.tsx", 2, "Unterminated regular expression")],
        tsc_sees_it: true,
    },
    Fixture {
        name: "missing CSS import",
        files: &[(
            "src/App.tsx",
            "import \"./missing.css\";\n\nexport default function App() {\n  return <p>hi</p>;\n}\n",
        )],
        expect: &[("src/App.tsx", 1, "./missing.css")],
        tsc_sees_it: false,
    },
    Fixture {
        name: "bad Tailwind directive",
        files: &[(
            "src/index.css",
            "@import \"tailwindcss\" source(\"../src\");\n\n.btn {\n  @apply not-a-real-class;\n}\n",
        )],
        expect: &[("src/index.css", 0, "not-a-real-class")],
        tsc_sees_it: false,
    },
    Fixture {
        // The model "fixed" tsc's complaint with a declaration instead of
        // installing the package: only the bundler can tell.
        name: "missing package at run time",
        files: &[
            (
                "src/App.tsx",
                "import confetti from \"canvas-confetti\";\n\nexport default function App() {\n  return <button onClick={() => confetti()}>hi</button>;\n}\n",
            ),
            ("src/shims.d.ts", "declare module \"canvas-confetti\";\n"),
        ],
        expect: &[("src/App.tsx", 1, "canvas-confetti")],
        tsc_sees_it: false,
    },
];
