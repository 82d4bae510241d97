// Dev server settings for a project preview behind a proxy.
//
// The preview is served at `{id}.localhost:{port}` by `apna serve` or at
// `{id}.{CADDY_DOMAIN}` by Caddy; Vite itself listens on PORT. The browser's
// HMR socket must go to the proxy, not to Vite's own port, so the driver sets
// APNA_HMR_CLIENT_PORT (443 behind Caddy, the `apna serve` port locally).
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
  // Inside the project dir so the sandbox (bubblewrap, a Pod volume) can write it.
  cacheDir: ".vite",
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
