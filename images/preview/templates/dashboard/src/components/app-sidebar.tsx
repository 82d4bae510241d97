import { NavLink } from "react-router-dom";
import { LayoutDashboard, Settings, ShoppingCart } from "lucide-react";

import { cn } from "@/lib/utils";

const links = [
  { to: "/", label: "Overview", icon: LayoutDashboard },
  { to: "/orders", label: "Orders", icon: ShoppingCart },
  { to: "/settings", label: "Settings", icon: Settings },
];

export function AppSidebar() {
  return (
    <aside className="hidden w-60 shrink-0 flex-col border-r bg-muted/40 p-4 md:flex">
      <div className="mb-6 flex items-center gap-2 px-2 text-lg font-semibold">
        <div className="size-6 rounded-md bg-primary" />
        Acme
      </div>
      <nav className="flex flex-col gap-1">
        {links.map(({ to, label, icon: Icon }) => (
          <NavLink
            key={to}
            to={to}
            end={to === "/"}
            className={({ isActive }) =>
              cn(
                "flex items-center gap-2 rounded-md px-2 py-1.5 text-sm text-muted-foreground hover:bg-accent hover:text-accent-foreground",
                isActive && "bg-accent font-medium text-foreground",
              )
            }
          >
            <Icon className="size-4" />
            {label}
          </NavLink>
        ))}
      </nav>
    </aside>
  );
}
