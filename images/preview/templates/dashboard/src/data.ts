// Sample data the starter shows; replace it with the app's own.

export type Order = {
  id: string;
  customer: string;
  email: string;
  amount: number;
  status: "paid" | "pending" | "refunded";
  date: string;
};

export const revenue = [
  { month: "Jan", revenue: 4200, orders: 120 },
  { month: "Feb", revenue: 3800, orders: 98 },
  { month: "Mar", revenue: 5100, orders: 143 },
  { month: "Apr", revenue: 4700, orders: 131 },
  { month: "May", revenue: 6200, orders: 170 },
  { month: "Jun", revenue: 6900, orders: 188 },
];

export const orders: Order[] = [
  { id: "#1042", customer: "Ana Lima", email: "ana@example.com", amount: 129, status: "paid", date: "2026-06-28" },
  { id: "#1041", customer: "Ravi Kumar", email: "ravi@example.com", amount: 64, status: "pending", date: "2026-06-27" },
  { id: "#1040", customer: "Mia Chen", email: "mia@example.com", amount: 310, status: "paid", date: "2026-06-27" },
  { id: "#1039", customer: "Tom Becker", email: "tom@example.com", amount: 45, status: "refunded", date: "2026-06-26" },
  { id: "#1038", customer: "Sara Ali", email: "sara@example.com", amount: 89, status: "paid", date: "2026-06-25" },
];
