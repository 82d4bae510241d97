// Dev server settings for a project preview behind a proxy.
//
// The preview is served at `{id}.localhost:{port}` by `apna serve` or at
// `{id}.{CADDY_DOMAIN}` by Caddy; Vite itself listens on PORT. The browser's
// HMR socket must go to the proxy, not to Vite's own port, so the driver sets
// APNA_HMR_CLIENT_PORT (443 behind Caddy, the `apna serve` port locally).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import tailwindcss from "@tailwindcss/vite";
import apnaSource from "./vite-plugin-apna-source.js";

const port = Number(process.env.PORT ?? 5173);
const hmrClientPort = process.env.APNA_HMR_CLIENT_PORT
  ? Number(process.env.APNA_HMR_CLIENT_PORT)
  : undefined;

export default defineConfig({
  plugins: [apnaSource(), react(), tailwindcss()],
  resolve: { alias: { "@": fileURLToPath(new URL("./src", import.meta.url)) } },
  // Inside the project dir so the sandbox (bubblewrap, a Pod volume) can write it.
  cacheDir: ".vite",
  // Every installed package is pre-bundled up front (Apna does it once per
  // lock file and shares the result), so the first import of a chart or an
  // icon never makes Vite re-optimise and reload the page.
  optimizeDeps: {
    include: [
      "react",
      "react/jsx-runtime",
      "react/jsx-dev-runtime",
      "react-dom",
      "react-dom/client",
      "@hookform/resolvers/zod",
      "@radix-ui/react-avatar",
      "@radix-ui/react-checkbox",
      "@radix-ui/react-dialog",
      "@radix-ui/react-dropdown-menu",
      "@radix-ui/react-label",
      "@radix-ui/react-progress",
      "@radix-ui/react-select",
      "@radix-ui/react-separator",
      "@radix-ui/react-slot",
      "@radix-ui/react-switch",
      "@radix-ui/react-tabs",
      "@radix-ui/react-tooltip",
      "class-variance-authority",
      "clsx",
      "date-fns",
      "date-fns/locale",
      "lucide-react",
      "react-hook-form",
      "react-router",
      "react-router-dom",
      "recharts",
      "sonner",
      "tailwind-merge",
      "zod",
    ],
  },
  // Charts and icons make apps bigger than Vite's 500 kB hint; the warning is noise here.
  build: { chunkSizeWarningLimit: 2000 },
  server: {
    host: process.env.HOST ?? "0.0.0.0",
    port,
    strictPort: true,
    // The proxy (apna serve, Caddy) already admits only `{id}.` preview hosts.
    allowedHosts: true,
    hmr: hmrClientPort ? { clientPort: hmrClientPort } : undefined,
    watch: { ignored: ["**/.apna-build/**", "**/dist/**"] },
  },
  preview: { host: process.env.HOST ?? "0.0.0.0", port, strictPort: true, allowedHosts: true },
});
