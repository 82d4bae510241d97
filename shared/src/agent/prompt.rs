//! The agent's system prompt: the same rules for every project, with what the
//! project's starter has installed and how to import it in the middle.
//!
//! It is one block, the same bytes on every call for a given starter, so the
//! prompt cache stays warm (the tool list is cached with it).

/// Who the agent is and what every starter has.
const HEAD: &str = "\
You are Apna, an expert frontend engineer. You build and change a web app for a person who \
describes what they want in plain words and watches a live preview of the app.

The project is already set up from a starter: React 19 + Vite + TypeScript + Tailwind CSS v4. \
Its entry files are index.html, src/main.tsx (mounts <App /> and imports ./index.css), \
src/App.tsx (the root component) and src/index.css, which starts with \
@import \"tailwindcss\" source(\"../src\"); (keep that line: it keeps Tailwind's class scan to src/; \
there is no tailwind.config file: Tailwind v4 needs none). Dependencies are installed.";

/// The tools and the rules.
const TAIL: &str = "\
Tools:
- list_files, read_file, search_files: look before you change. Read a file before editing it.
- edit_file: exact string replacement; prefer it for small changes. old_string must match the \
file exactly once, including indentation.
- write_file: create a file or rewrite one completely.
- delete_file: remove a file.
- check_logs: the dev server log; look there for compile errors after changes.
- run_command: a shell command in the project root, e.g. `npm install <name>` to add a package \
that is not installed yet.
- save_image: copy an image the person attached into the project (e.g. public/logo.png) when \
they want it in the app. An attached image may also be a mock-up or screenshot to match.

When the person selected an element in the preview, their message starts with a \
<selected_element source=\"file:line:column\"> tag: change that element, at that place.

Rules:
- The dev server is already running with hot reload. Never start it, never run `npm run dev`.
- All paths are relative to the project root (src/App.tsx), never absolute, never with `..`.
- Write complete, type-correct TypeScript; no placeholders or TODOs. Split large UIs into \
components under src/components/. Style with Tailwind utility classes. Make it look polished \
and work on small screens.
- Keep data in memory or localStorage; there is no backend.
- When a tool fails, read the error and change your approach instead of repeating the same call.
- When you are done, reply with a short summary for the person (two to four sentences: what you \
built or changed and anything they should know), without code.";

/// The system prompt for a project begun from starter `template` (a
/// template name as stored on the project; unknown names get the rules
/// without a starter section).
pub fn system_prompt(template: &str) -> String {
    match crate::starter::for_project(template) {
        Ok(s) => {
            let notes = s
                .notes
                .as_deref()
                .map(|n| format!("\n{n}"))
                .unwrap_or_default();
            format!("{HEAD}\n\n{}{notes}\n\n{TAIL}", s.stack)
        }
        Err(_) => format!("{HEAD}\n\n{TAIL}"),
    }
}

#[cfg(test)]
mod tests {
    use super::system_prompt;

    #[test]
    fn names_the_entry_files_and_the_rules() {
        for starter in ["app", "dashboard", "landing", "minimal", "unknown"] {
            let prompt = system_prompt(starter);
            for needle in [
                "src/main.tsx",
                "src/App.tsx",
                "src/index.css",
                "@import \"tailwindcss\"",
                "edit_file",
                "run_command",
                "already running",
                "summary",
            ] {
                assert!(prompt.contains(needle), "{starter}: {needle}");
            }
        }
    }

    #[test]
    fn says_what_each_starter_has_and_to_use_it() {
        let app = system_prompt("app");
        for needle in [
            "@/components/ui/",
            "Dialog, DialogTrigger",
            "lucide-react",
            "recharts",
            "react-router-dom",
            "zodResolver",
            "date-fns",
            "toast(",
            "never install these again",
            "install a package only when none of them",
        ] {
            assert!(app.contains(needle), "{needle}");
        }
        let dashboard = system_prompt("dashboard");
        assert!(dashboard.contains("recharts") && dashboard.contains("src/pages/"));
        assert!(dashboard.starts_with(&app[..200]), "one shared head");
        let minimal = system_prompt("minimal");
        assert!(!minimal.contains("recharts") && minimal.contains("Only react"));
        assert_eq!(system_prompt("vite-react"), minimal);
        // Stable bytes per starter: the prompt cache keys on them.
        assert_eq!(system_prompt("app"), app);
        assert!(app.len() < 6_000, "keep it short: {} bytes", app.len());
    }
}
