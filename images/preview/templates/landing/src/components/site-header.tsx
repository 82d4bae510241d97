import { Button } from "@/components/ui/button";

const nav = ["Features", "Pricing", "FAQ"];

export function SiteHeader() {
  return (
    <header className="sticky top-0 z-40 border-b bg-background/80 backdrop-blur">
      <div className="mx-auto flex h-16 max-w-6xl items-center justify-between px-6">
        <a href="#" className="flex items-center gap-2 font-semibold">
          <div className="size-6 rounded-md bg-primary" />
          Brightside
        </a>
        <nav className="hidden gap-6 text-sm text-muted-foreground md:flex">
          {nav.map((item) => (
            <a key={item} href={`#${item.toLowerCase()}`} className="hover:text-foreground">
              {item}
            </a>
          ))}
        </nav>
        <Button size="sm">Get started</Button>
      </div>
    </header>
  );
}
