import { BrowserRouter, Route, Routes, useLocation } from "react-router-dom";
import { Bell } from "lucide-react";

import { AppSidebar } from "@/components/app-sidebar";
import { Avatar, AvatarFallback } from "@/components/ui/avatar";
import { Button } from "@/components/ui/button";
import { Orders } from "@/pages/orders";
import { Overview } from "@/pages/overview";
import { Settings } from "@/pages/settings";

const titles: Record<string, string> = { "/": "Overview", "/orders": "Orders", "/settings": "Settings" };

function Header() {
  const { pathname } = useLocation();
  return (
    <header className="flex h-14 items-center justify-between border-b px-6">
      <h1 className="text-lg font-semibold">{titles[pathname] ?? "Dashboard"}</h1>
      <div className="flex items-center gap-2">
        <Button variant="ghost" size="icon" aria-label="Notifications">
          <Bell />
        </Button>
        <Avatar>
          <AvatarFallback>AL</AvatarFallback>
        </Avatar>
      </div>
    </header>
  );
}

export default function App() {
  return (
    <BrowserRouter>
      <div className="flex min-h-screen bg-background">
        <AppSidebar />
        <div className="flex min-w-0 flex-1 flex-col">
          <Header />
          <main className="flex-1 p-6">
            <Routes>
              <Route path="/" element={<Overview />} />
              <Route path="/orders" element={<Orders />} />
              <Route path="/settings" element={<Settings />} />
              <Route path="*" element={<Overview />} />
            </Routes>
          </main>
        </div>
      </div>
    </BrowserRouter>
  );
}
